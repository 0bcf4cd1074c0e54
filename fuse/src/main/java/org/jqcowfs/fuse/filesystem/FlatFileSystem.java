package org.jqcowfs.fuse.filesystem;

import com.sun.security.auth.module.UnixSystem;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.fuse.protocol.FuseException;
import org.jqcowfs.io.Closeables;
import org.jqcowfs.readahead.Borrower;
import org.jqcowfs.readahead.ReadAheadImage;
import org.jqcowfs.readahead.ReadAheadStream;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The filesystem both FUSE backends serve: a read-only root directory holding one flat file per
 * backing chain, whose bytes are the chain's virtual disk. Backend-neutral: offsets and lengths are
 * bytes, errors are exceptions ({@link FuseException} for an errno answer).
 */
public final class FlatFileSystem implements Closeable {
  private static final Logger LOG = LoggerFactory.getLogger(FlatFileSystem.class);

  /**
   * Readahead for the mount, in KiB (root only: the bdi's {@code read_ahead_kb}), and the window of
   * each flat file's read-ahead image. The kernel then asks for up to 8 MiB ahead of a sequential
   * reader in 1 MiB READs, answered in parallel while the reader is busy (less left cp waiting:
   * docs/decisions/page-cache-and-push.md). The transport's drop-behind keeps its lag above this,
   * doubled (cp's FADV_SEQUENTIAL doubles the window).
   */
  public static final int READ_AHEAD_KIB = 8192;

  /** The root directory's inode (FUSE_ROOT_ID). */
  public static final long ROOT_INODE = 1;

  /** {@code lseek} whence values the kernel forwards (FUSE_LSEEK). */
  public static final int SEEK_DATA = 3;

  public static final int SEEK_HOLE = 4;

  /** Extended attribute giving the bytes served by READ since the mount, in decimal. */
  public static final String READ_BYTES_XATTR = "user.jqcowfs.read_bytes";

  /**
   * One flat file.
   *
   * @param name its name in the root directory
   * @param inode its inode number (2, 3, ...)
   * @param chain the backing chain it shows
   * @param dataCount bytes that read as data (for st_blocks = bytes / 512, rounded up)
   * @param mtimeMillis the top image's modification time, milliseconds since the epoch
   * @param uid st_uid: the top image file's owner, or the {@code uid=} option
   * @param gid st_gid: the top image file's group, or the {@code gid=} option
   * @param permissions st_mode's permission bits: the top image file's read bits (0600 -> 0400), or
   *     {@code 0444 & ~umask} with the {@code umask=} option
   */
  public record FlatFile(
      String name,
      long inode,
      BackingChain chain,
      ReadAheadImage readAhead,
      DataCount dataCount,
      long mtimeMillis,
      int uid,
      int gid,
      int permissions) {
    /** The virtual disk's length in bytes (st_size). */
    public long size() {
      return chain.size();
    }

    /** st_blocks: the bytes that read as data, in 512-byte units, rounded up. */
    public long blocks() {
      return (dataCount.bytes() + 511) / 512;
    }
  }

  /**
   * The bytes of a flat file that read as data ({@link org.jqcowfs.image.Extent#readsAsData}), for
   * st_blocks. At first a bound that costs no walk: the layers' bytes on disk ({@link
   * BackingChain#hostBytes}), capped by the virtual size, which is enough for cp's {@code st_blocks
   * < st_size / 512} test for holes; exact once the background walk over block status has reached
   * the end of the disk. Thread-safe.
   */
  public static final class DataCount {
    private volatile long bytes;
    private volatile boolean exact;

    DataCount(long bound) {
      this.bytes = bound;
    }

    /** The bytes, exact or the bound. */
    public long bytes() {
      return bytes;
    }

    /** Whether {@link #bytes} is the walk's exact count. */
    public boolean exact() {
      return exact;
    }

    private volatile boolean changed;
    private volatile long changedNanos;

    void setExact(long exactBytes) {
      bytes = exactBytes;
      exact = true;
    }

    /** A write changed which bytes read as data: the count is walked again once writes pause. */
    void changed() {
      changedNanos = System.nanoTime();
      changed = true;
      exact = false;
    }

    /**
     * Whether a write came since the last call and none in the last {@code quietNanos}, clearing
     * the mark then.
     */
    boolean takeChanged(long quietNanos) {
      if (!changed || System.nanoTime() - changedNanos < quietNanos) {
        return false;
      }
      changed = false;
      return true;
    }
  }

  /**
   * Who owns the flat files and who may read them, each -1 to follow the top image file ({@code -o
   * uid=N,gid=N,umask=M}, as FUSE filesystems spell them).
   *
   * @param uid st_uid of every flat file, or -1
   * @param gid st_gid of every flat file, or -1
   * @param umask permission bits taken away from 0444, or -1 for the image's read bits
   */
  public record Ownership(int uid, int gid, int umask) {
    /** Everything from the image. */
    public static final Ownership FROM_IMAGE = new Ownership(-1, -1, -1);
  }

  private final List<FlatFile> files;
  private final Map<String, FlatFile> byName = new HashMap<>();
  private final long mountMillis = System.currentTimeMillis();
  private final int ownerUid = (int) new UnixSystem().getUid(); // the mounting process's
  private final int ownerGid = (int) new UnixSystem().getGid();
  private final LongAdder readBytes = new LongAdder();

  /** Set by {@link #close}: the data count walk stops. */
  private volatile boolean closing;

  private final Thread dataCounter;

  /** Whether a file is writable: fixed at open, asked by every request that would write. */
  private final boolean writable;

  private FlatFileSystem(List<FlatFile> files) {
    this.dataCounter = new Thread(this::countData, "jqcowfs-data-count");
    this.dataCounter.setDaemon(true);
    this.files = List.copyOf(files);
    this.writable = files.stream().anyMatch(f -> f.chain().writable());
    for (FlatFile f : files) {
      byName.put(f.name(), f);
    }
  }

  /**
   * Opens every image with its chain and names its flat file: {@code name} when given (one image
   * only), else the image's file name with its extension replaced by {@code .raw}.
   *
   * @throws IllegalArgumentException if two files would have the same name, or {@code name} is
   *     given for several images or is not a valid file name
   * @throws IOException if an image or a backing file is refused or cannot be read; the images
   *     opened so far are closed
   */
  public static FlatFileSystem open(List<Path> images, String name, ChainOptions options)
      throws IOException {
    return open(images, name, options, Ownership.FROM_IMAGE);
  }

  /**
   * As {@link #open(List, String, ChainOptions)}, the files owned and readable as {@code ownership}
   * says. Nothing walks the disks before this returns: st_blocks starts as a bound and a background
   * walk makes it exact ({@link DataCount}); a damaged range does not refuse a disk.
   *
   * @throws IllegalArgumentException as {@link #open(List, String, ChainOptions)}
   * @throws IOException as {@link #open(List, String, ChainOptions)}
   */
  public static FlatFileSystem open(
      List<Path> images, String name, ChainOptions options, Ownership ownership)
      throws IOException {
    if (name != null && images.size() != 1) {
      throw new IllegalArgumentException("--name needs exactly one image, not " + images.size());
    }
    if (name != null
        && (name.isEmpty() || name.contains("/") || name.equals(".") || name.equals(".."))) {
      throw new IllegalArgumentException("--name '" + name + "' is not a file name");
    }
    List<FlatFile> files = new ArrayList<>();
    Map<String, Path> names = new HashMap<>();
    try {
      for (Path image : images) {
        String fileName = name != null ? name : rawName(image);
        Path clash = names.putIfAbsent(fileName, image);
        if (clash != null) {
          throw new IllegalArgumentException(
              "'" + image + "' and '" + clash + "' would both be " + fileName + "; use --name");
        }
        BackingChain chain = ChainOpener.open(image, options);
        long mtime;
        DataCount dataCount;
        int uid;
        int gid;
        int permissions;
        try {
          mtime = Files.getLastModifiedTime(image).toMillis();
          dataCount = new DataCount(Math.min(chain.size(), chain.hostBytes()));
          uid =
              ownership.uid() >= 0
                  ? ownership.uid()
                  : (Integer) Files.getAttribute(image, "unix:uid");
          gid =
              ownership.gid() >= 0
                  ? ownership.gid()
                  : (Integer) Files.getAttribute(image, "unix:gid");
          int bits = chain.writable() ? 0666 : 0444; // the write bits only on a writable mount
          permissions =
              ownership.umask() >= 0
                  ? bits & ~ownership.umask()
                  : bits & (Integer) Files.getAttribute(image, "unix:mode");
        } catch (IOException | RuntimeException e) {
          chain.close();
          throw e;
        }
        files.add(
            new FlatFile(
                fileName,
                ROOT_INODE + 1 + files.size(),
                chain,
                new ReadAheadImage(chain, READ_AHEAD_KIB * 1024L),
                dataCount,
                mtime,
                uid,
                gid,
                permissions));
      }
    } catch (IOException | RuntimeException e) {
      try {
        Closeables.closeAll(files.stream().map(FlatFile::readAhead).toList());
      } catch (IOException suppressed) {
        e.addSuppressed(suppressed);
      }
      throw e;
    }
    FlatFileSystem fs = new FlatFileSystem(files);
    fs.dataCounter.start();
    return fs;
  }

  /**
   * The background walk that makes each file's {@link DataCount} exact, file by file. It holds no
   * lock a READ takes and stops at {@link #close}. A damaged range it meets is logged once (a READ
   * or LSEEK there gives EIO) and skipped; an I/O error leaves that file's count at its bound.
   */
  private void countData() {
    for (FlatFile f : files) {
      countData(f);
    }
    // On a writable mount, a file is counted again once its writes have paused for 2 s: a walk
    // after every write took half a core from a random-write load.
    while (!closing && writable) {
      try {
        Thread.sleep(500);
      } catch (InterruptedException e) {
        return;
      }
      for (FlatFile f : files) {
        if (!closing && f.dataCount().takeChanged(2_000_000_000L)) {
          countData(f);
        }
      }
    }
  }

  private void countData(FlatFile f) {
    {
      try {
        long n =
            f.chain()
                .dataBytes(
                    d ->
                        LOG.error(
                            "{}; reads of guest range {} give EIO", d.getMessage(), d.rangeText()),
                    () -> closing);
        if (n < 0) {
          return;
        }
        if (!f.dataCount().changed) {
          f.dataCount().setExact(n);
        }
      } catch (IOException | RuntimeException e) {
        if (closing) {
          return;
        }
        LOG.warn(
            "{}: counting data bytes failed, st_blocks stays a bound: {}",
            f.name(),
            e.getMessage());
      }
    }
  }

  /** {@code image.qcow2} -> {@code image.raw}; a name without an extension gets {@code .raw}. */
  public static String rawName(Path image) {
    String base = image.getFileName().toString();
    int dot = base.lastIndexOf('.');
    return (dot > 0 ? base.substring(0, dot) : base) + ".raw";
  }

  /** The flat files, in inode order. */
  public List<FlatFile> files() {
    return files;
  }

  /** {@code S_IFDIR} and {@code S_IFREG}, the file type bits of a mode. */
  public static final int S_IFDIR = 0040000;

  public static final int S_IFREG = 0100000;

  /** The root directory's permissions: readable and searchable by all, never writable. */
  static final int ROOT_PERMISSIONS = 0555;

  /** The block size statfs reports, in bytes. */
  static final int STATFS_BLOCK_BYTES = 4096;

  /** The longest file name statfs reports, in bytes. */
  static final int NAME_MAX = 255;

  /**
   * What stat tells of an inode: the policy both backends encode.
   *
   * @param inode the inode number
   * @param size st_size in bytes
   * @param blocks st_blocks, 512-byte units
   * @param mtimeMillis st_mtime (and atime, ctime), milliseconds since the epoch
   * @param mode file type and permissions
   * @param nlink links
   * @param uid owner
   * @param gid group
   */
  public record Attributes(
      long inode,
      long size,
      long blocks,
      long mtimeMillis,
      int mode,
      int nlink,
      int uid,
      int gid) {}

  /**
   * What statfs tells: the disks' bytes, nothing free (the flat files are read-only).
   *
   * @param blocks capacity in {@code blockBytes} units
   * @param files inodes in use
   * @param blockBytes block size in bytes
   * @param nameMax longest name in bytes
   */
  public record FsStats(long blocks, long files, int blockBytes, int nameMax) {}

  /**
   * The attributes of {@code inode}: the root directory (owned by the mounting user, mode 0555) or
   * a flat file (owned and readable as its image, {@link FlatFile#permissions}).
   *
   * @throws FuseException ENOENT for an unknown inode
   */
  public Attributes attributes(long inode) {
    if (inode == ROOT_INODE) {
      return new Attributes(
          inode, 0, 0, mountMillis, S_IFDIR | ROOT_PERMISSIONS, 2, ownerUid, ownerGid);
    }
    FlatFile f = file(inode);
    return new Attributes(
        inode,
        f.size(),
        f.blocks(),
        f.mtimeMillis(),
        S_IFREG | f.permissions(),
        1,
        f.uid(),
        f.gid());
  }

  /** The filesystem's statfs answer. */
  public FsStats stats() {
    long bytes = totalBytes();
    return new FsStats(
        (bytes + STATFS_BLOCK_BYTES - 1) / STATFS_BLOCK_BYTES,
        files.size() + 1,
        STATFS_BLOCK_BYTES,
        NAME_MAX);
  }

  /**
   * Checks an open of {@code inode} with {@code flags} ({@code open(2)}'s): for writing only on a
   * writable mount, never truncating (the disk's size is fixed).
   *
   * @throws FuseException EISDIR for the root, EROFS for write access to a read-only file, EPERM
   *     for O_TRUNC on a writable one (EROFS on a read-only one), ENOENT for an unknown inode
   */
  public FlatFile checkOpen(long inode, int flags) {
    if (inode == ROOT_INODE) {
      throw new FuseException(Errno.EISDIR, "is a directory");
    }
    FlatFile f = file(inode);
    boolean writable = f.chain().writable();
    if (!writable && ((flags & O_ACCMODE) != 0 || (flags & O_TRUNC) != 0)) {
      throw new FuseException(Errno.EROFS, "read-only");
    }
    if ((flags & O_TRUNC) != 0) {
      throw new FuseException(Errno.EPERM, "truncating a disk image (its size is fixed)");
    }
    return f;
  }

  /**
   * Checks {@code access(2)}'s {@code mask} on {@code inode}: only the files of a writable mount
   * are writable, never the directory.
   *
   * @throws FuseException EROFS when {@code W_OK} is asked of anything else, ENOENT for an unknown
   *     inode
   */
  public void checkAccess(long inode, int mask) {
    boolean writable = inode != ROOT_INODE && file(inode).chain().writable();
    if ((mask & W_OK) != 0 && !writable) {
      throw new FuseException(Errno.EROFS, "read-only");
    }
  }

  /** Whether any file is writable (a {@code --rw} mount). */
  public boolean writable() {
    return writable;
  }

  /**
   * Writes {@code src}'s remaining bytes to {@code f} at {@code offset}, up to the end of the disk
   * (FUSE_WRITE): through the read-ahead decorator, so that no window keeps the old bytes.
   *
   * @return the bytes written: fewer than asked when the write reaches past the end
   * @throws FuseException EROFS on a read-only file, ENOSPC at or past the end of the disk (as a
   *     block device answers), EINVAL for a negative offset
   * @throws IOException when the image cannot be written: EIO, or ENOSPC from the host
   */
  public int write(FlatFile f, ByteBuffer src, long offset) throws IOException {
    requireWritable(f);
    if (offset < 0) {
      throw new FuseException(Errno.EINVAL, "negative offset " + offset);
    }
    if (offset >= f.size()) {
      throw new FuseException(Errno.ENOSPC, "write at " + offset + ", past the end of the disk");
    }
    int n = (int) Math.min(src.remaining(), f.size() - offset);
    f.readAhead().write(src.slice(src.position(), n), offset);
    f.dataCount().changed();
    return n;
  }

  /** {@code fallocate(2)}'s {@code FALLOC_FL_KEEP_SIZE}. */
  public static final int FALLOC_FL_KEEP_SIZE = 1;

  /** {@code FALLOC_FL_PUNCH_HOLE}. */
  public static final int FALLOC_FL_PUNCH_HOLE = 2;

  /** {@code FALLOC_FL_ZERO_RANGE}. */
  public static final int FALLOC_FL_ZERO_RANGE = 0x10;

  /**
   * {@code fallocate(2)} on {@code f} (FUSE_FALLOCATE): PUNCH_HOLE (with KEEP_SIZE) reads back as
   * zeros and gives the clusters back ({@code Image.punchHole}); ZERO_RANGE writes zeroes keeping
   * the allocation; plain allocation inside the disk does nothing (its clusters are allocated on
   * write).
   *
   * @throws FuseException EROFS on a read-only file, EOPNOTSUPP for other modes, EFBIG for a range
   *     past the end of the disk without KEEP_SIZE, EINVAL for a bad range
   * @throws IOException as {@link #write}
   */
  public void fallocate(FlatFile f, int mode, long offset, long length) throws IOException {
    requireWritable(f);
    if (offset < 0 || length <= 0) {
      throw new FuseException(Errno.EINVAL, "range " + offset + " +" + length);
    }
    boolean keepSize = (mode & FALLOC_FL_KEEP_SIZE) != 0;
    long end = Math.min(f.size(), offset + length);
    if (offset + length > f.size() && !keepSize) {
      throw new FuseException(Errno.EFBIG, "the disk's size is fixed");
    }
    int kind = mode & ~FALLOC_FL_KEEP_SIZE;
    if (kind != 0 && kind != FALLOC_FL_PUNCH_HOLE && kind != FALLOC_FL_ZERO_RANGE) {
      throw new FuseException(Errno.EOPNOTSUPP, "fallocate mode " + mode);
    }
    if (kind == 0 || offset >= end) {
      return;
    }
    if (kind == FALLOC_FL_PUNCH_HOLE) {
      f.readAhead().punchHole(offset, end - offset);
    } else {
      f.readAhead().writeZeroes(offset, end - offset, false);
    }
    f.dataCount().changed();
  }

  /**
   * Makes every completed write to {@code f} durable (FUSE_FSYNC); for the root, to every file
   * (FUSE_FSYNCDIR).
   *
   * @throws IOException when the image cannot be flushed: EIO
   */
  public void fsync(long inode) throws IOException {
    if (inode == ROOT_INODE) {
      for (FlatFile f : files) {
        f.readAhead().flush();
      }
    } else {
      file(inode).readAhead().flush();
    }
  }

  /**
   * Checks a change of {@code inode}'s attributes (FUSE_SETATTR, or libfuse's truncate, chmod and
   * chown); each value is -1 when it is not asked for. The disk's size, mode and owner are fixed;
   * asking for the value they have is accepted.
   *
   * @throws FuseException EPERM for a change of size, mode (its 07777 bits) or owner; ENOENT for an
   *     unknown inode
   */
  public void checkAttributeChange(long inode, long size, int mode, int uid, int gid) {
    Attributes a = attributes(inode);
    if (size >= 0 && size != a.size()) {
      throw new FuseException(Errno.EPERM, "resizing the disk");
    }
    if (mode >= 0 && (mode & 07777) != (a.mode() & 07777)) {
      throw new FuseException(Errno.EPERM, "changing the mode");
    }
    if ((uid >= 0 && uid != a.uid()) || (gid >= 0 && gid != a.gid())) {
      throw new FuseException(Errno.EPERM, "changing the owner");
    }
  }

  private static void requireWritable(FlatFile f) {
    if (!f.chain().writable()) {
      throw new FuseException(Errno.EROFS, "read-only");
    }
  }

  private static final int O_ACCMODE = 3;
  private static final int O_TRUNC = 01000;
  private static final int W_OK = 2;

  /** The file named {@code name} in the root directory; ENOENT if there is none. */
  public FlatFile lookup(String name) {
    FlatFile f = byName.get(name);
    if (f == null) {
      throw new FuseException(Errno.ENOENT, name);
    }
    return f;
  }

  /** The file with inode {@code inode}; ENOENT if there is none (the root is not a file). */
  public FlatFile file(long inode) {
    long index = inode - ROOT_INODE - 1;
    if (index < 0 || index >= files.size()) {
      throw new FuseException(Errno.ENOENT, "inode " + inode);
    }
    return files.get((int) index);
  }

  /** The files' virtual sizes added up, in bytes (for statfs). */
  public long totalBytes() {
    return files.stream().mapToLong(FlatFile::size).sum();
  }

  /** When the filesystem was mounted, milliseconds since the epoch (the root's times). */
  public long mountMillis() {
    return mountMillis;
  }

  /**
   * Reads from {@code f} at {@code offset} into {@code dst}, at most {@code dst.remaining()} bytes,
   * fewer at the end of the file.
   *
   * @return the bytes read (0 at or past the end)
   * @throws IOException if the range cannot be read (a corrupt or truncated image): EIO
   * @throws FuseException EINVAL for a negative offset
   */
  public int read(FlatFile f, ByteBuffer dst, long offset) throws IOException {
    return served(readRange(f, dst, offset));
  }

  /**
   * {@link #read} through {@code reader}, an open file's reader (which may have read ahead): into
   * {@code dst}, or lent to {@code payload} from a read-ahead window ({@link
   * ReadAheadStream#read(ByteBuffer, long, org.jqcowfs.readahead.Borrower)}).
   *
   * @throws IOException as {@link #read}
   */
  public int read(ReadAheadStream reader, ByteBuffer dst, long offset, Borrower payload)
      throws IOException {
    if (offset < 0) {
      throw new FuseException(Errno.EINVAL, "negative offset " + offset);
    }
    return served(reader.read(dst, offset, payload));
  }

  private int served(int bytes) {
    readBytes.add(bytes);
    return bytes;
  }

  /** {@link #read} without counting the bytes as served (read-ahead). */
  static int readRange(FlatFile f, ByteBuffer dst, long offset) throws IOException {
    if (offset < 0) {
      throw new FuseException(Errno.EINVAL, "negative offset " + offset);
    }
    long size = f.size();
    if (offset >= size) {
      return 0;
    }
    int n = (int) Math.min(dst.remaining(), size - offset);
    f.chain().read(dst.slice(dst.position(), n), offset);
    dst.position(dst.position() + n);
    return n;
  }

  /**
   * {@code lseek(SEEK_DATA | SEEK_HOLE)} by the rules of QEMU's FUSE export: data is where some
   * layer holds data; zero clusters and unallocated ranges are holes.
   *
   * @return the offset found
   * @throws FuseException ENXIO when {@code offset >= size}, or SEEK_DATA finds no data at or after
   *     {@code offset}; EINVAL for another whence
   * @throws IOException if block status cannot be read there: EIO
   */
  public long seek(FlatFile f, long offset, int whence) throws IOException {
    if (whence != SEEK_DATA && whence != SEEK_HOLE) {
      throw new FuseException(Errno.EINVAL, "whence " + whence);
    }
    if (offset < 0 || offset >= f.size()) {
      throw new FuseException(Errno.ENXIO, "offset " + offset + " outside the file");
    }
    long found = whence == SEEK_DATA ? f.chain().seekData(offset) : f.chain().seekHole(offset);
    if (found < 0) {
      throw new FuseException(Errno.ENXIO, "no data at or after " + offset);
    }
    return found;
  }

  /** Bytes served by {@link #read} since the mount (read-ahead not counted until served). */
  public long readBytes() {
    return readBytes.sum();
  }

  /**
   * The value of extended attribute {@code name} of {@code inode}.
   *
   * @throws FuseException ENODATA for any attribute but {@link #READ_BYTES_XATTR} on the root
   */
  public byte[] xattr(long inode, String name) {
    if (inode == ROOT_INODE && READ_BYTES_XATTR.equals(name)) {
      return Long.toString(readBytes()).getBytes(java.nio.charset.StandardCharsets.US_ASCII);
    }
    throw new FuseException(Errno.ENODATA, name);
  }

  @Override
  public void close() throws IOException {
    closing = true;
    try {
      dataCounter.join(10_000); // a step of the walk reads one L2 table at most
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    Closeables.closeAll(files.stream().map(FlatFile::readAhead).toList());
  }
}
