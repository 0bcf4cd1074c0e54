package org.jqcowfs.fuse.filesystem;

import com.sun.security.auth.module.UnixSystem;
import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.LongAdder;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.fuse.protocol.FuseException;
import org.jqcowfs.io.Closeables;
import org.jqcowfs.readahead.Borrower;
import org.jqcowfs.readahead.ReadAheadStream;

/**
 * The filesystem both FUSE backends serve: a read-only root directory holding one flat file per
 * backing chain, whose bytes are the chain's virtual disk. Backend-neutral: offsets and lengths are
 * bytes, errors are exceptions ({@link FuseException} for an errno answer).
 */
public final class FlatFileSystem implements Closeable {

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
    this.files = List.copyOf(files);
    this.writable = files.stream().anyMatch(f -> f.chain().writable());
    for (FlatFile f : files) {
      byName.put(f.name(), f);
    }
    this.dataCounter =
        new Thread(new DataCounter(this.files, () -> closing, writable), "jqcowfs-data-count");
    this.dataCounter.setDaemon(true);
  }

  /**
   * Refuses a name that cannot be a file in the root directory.
   *
   * @throws IllegalArgumentException naming it
   */
  public static void checkName(String name) {
    if (name.isEmpty() || name.contains("/") || name.equals(".") || name.equals("..")) {
      throw new IllegalArgumentException("--name '" + name + "' is not a file name");
    }
  }

  /**
   * A filesystem of one flat file per disk, in order (inodes 2, 3, ...). It owns the disks from
   * here on, and closes them if it refuses them. Nothing walks the disks before this returns:
   * st_blocks starts as a bound (the layers' bytes on disk) and a background walk makes it exact
   * ({@link DataCount}); a damaged range does not refuse a disk.
   *
   * @throws IllegalArgumentException if a name is not a file name, or two disks have one name
   * @throws IOException if a chain cannot say its bytes on disk
   */
  public static FlatFileSystem of(List<Disk> disks) throws IOException {
    List<FlatFile> files = new ArrayList<>();
    Map<String, Disk> names = new HashMap<>();
    try {
      for (Disk d : disks) {
        String n = d.name();
        checkName(n);
        Disk clash = names.putIfAbsent(n, d);
        if (clash != null) {
          throw new IllegalArgumentException(
              "'"
                  + d.chain().location()
                  + "' and '"
                  + clash.chain().location()
                  + "' would both be "
                  + n
                  + "; use --name");
        }
        BackingChain chain = d.chain();
        files.add(
            new FlatFile(
                n,
                ROOT_INODE + 1 + files.size(),
                chain,
                d.readAhead(),
                new DataCount(Math.min(chain.size(), chain.hostBytes())),
                d.mtimeMillis(),
                d.uid(),
                d.gid(),
                d.permissions()));
      }
    } catch (IOException | RuntimeException e) {
      Disk.closeAfter(disks, e);
      throw e;
    }
    FlatFileSystem fs = new FlatFileSystem(files);
    fs.dataCounter.start();
    return fs;
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
