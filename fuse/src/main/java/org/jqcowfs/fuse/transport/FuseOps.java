package org.jqcowfs.fuse.transport;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.jqcowfs.fuse.filesystem.Attributes;
import org.jqcowfs.fuse.filesystem.FlatFile;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;
import org.jqcowfs.fuse.filesystem.FsStats;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.fuse.protocol.FuseException;
import org.jqcowfs.fuse.protocol.FuseOpcode;
import org.jqcowfs.readahead.ReadAheadStream;

/**
 * The FUSE operations of the flat-file filesystem: each decodes its request body, asks {@link
 * FlatFileSystem} and encodes its reply payload (struct layouts of the kernel's {@code
 * include/uapi/linux/fuse.h}, protocol 7.31, little-endian). On a read-only mount the operations
 * that write answer EROFS; on a writable one WRITE, FALLOCATE, SETATTR (same size, mode and owner)
 * and FSYNC reach the filesystem. Unknown opcodes answer ENOSYS; errors are thrown and mapped to
 * errno by {@link FuseDispatcher}, which also answers FUSE_INIT through {@link #init}.
 */
final class FuseOps {
  /** Protocol version this code speaks. */
  static final int KERNEL_VERSION = 7;

  static final int KERNEL_MINOR_VERSION = 33;

  /** Pages per request negotiated through FUSE_MAX_PAGES: 256 x 4 KiB = 1 MiB. */
  static final int MAX_PAGES = 256;

  /** Largest READ request (and reply payload) in bytes. */
  static final int MAX_READ_BYTES = MAX_PAGES * 4096;

  // fuse_init_in.flags / fuse_init_out.flags
  static final int FUSE_ASYNC_READ = 1;
  static final int FUSE_BIG_WRITES = 1 << 5;
  static final int FUSE_ASYNC_DIO = 1 << 15;
  static final int FUSE_PARALLEL_DIROPS = 1 << 18;
  static final int FUSE_MAX_PAGES = 1 << 22;
  // The files never have set-id bits or capabilities, so there is nothing to kill on a write;
  // without
  // it the kernel asks GETXATTR security.capability before every WRITE (SB_NOSEC is then set).
  static final int FUSE_HANDLE_KILLPRIV_V2 = 1 << 28;
  static final int WANTED_FLAGS =
      FUSE_ASYNC_READ
          | FUSE_BIG_WRITES
          | FUSE_ASYNC_DIO
          | FUSE_PARALLEL_DIROPS
          | FUSE_MAX_PAGES
          | FUSE_HANDLE_KILLPRIV_V2;

  // fuse_open_out.open_flags
  static final int FOPEN_KEEP_CACHE = 1 << 1;
  static final int FOPEN_NOFLUSH = 1 << 5;

  static final int DT_DIR = 4;
  static final int DT_REG = 8;

  /** How long the kernel may cache names and attributes: the images do not change. */
  static final long VALID_SECONDS = 3600;

  /**
   * st_blksize: the I/O size readers are told to prefer (coreutils uses at least 128 KiB; cp
   * --sparse sizes its buffer by the destination instead). 1 MiB, the largest READ there is.
   */
  static final int BLKSIZE = MAX_READ_BYTES;

  private final FlatFileSystem fs;

  private final InvalInodeNotifier notifier;

  /** An open file: its reads, and the drop-behind of its page cache. */
  private record Handle(ReadAheadStream reader, DropBehind dropBehind) {}

  /** The open files by file handle (fuse_open_out.fh), from FUSE_OPEN to FUSE_RELEASE. */
  private final Map<Long, Handle> open = new ConcurrentHashMap<>();

  private final AtomicLong nextHandle = new AtomicLong(1);

  /**
   * @param notifier where page cache invalidations go (drop-behind of sequential readers)
   */
  FuseOps(FlatFileSystem fs, InvalInodeNotifier notifier) {
    this.fs = fs;
    this.notifier = notifier;
  }

  FlatFileSystem fs() {
    return fs;
  }

  /**
   * FUSE_INIT: {@code fuse_init_in} -> {@code fuse_init_out} (64 bytes). Asks for the kernel's
   * flags among {@link #WANTED_FLAGS} and 1 MiB requests, and keeps the kernel's readahead (a root
   * mount raises it afterwards, {@link KernelBackend#READ_AHEAD_KIB}).
   *
   * @throws FuseException EPROTO-like EIO if the kernel's major version is not 7
   */
  int init(ByteBuffer in, ByteBuffer out) {
    int major = in.getInt(0);
    int maxReadahead = in.getInt(8);
    int flags = in.getInt(12);
    if (major != KERNEL_VERSION) {
      throw new FuseException(Errno.EIO, "kernel FUSE major version " + major + ", need 7");
    }
    out.putInt(0, KERNEL_VERSION)
        .putInt(4, KERNEL_MINOR_VERSION)
        .putInt(8, maxReadahead)
        .putInt(12, flags & WANTED_FLAGS)
        .putShort(16, (short) 64) // max_background
        .putShort(18, (short) 48) // congestion_threshold
        .putInt(20, FuseSession.MAX_WRITE_BYTES)
        .putInt(24, 1) // time_gran: nanoseconds
        .putShort(28, (short) MAX_PAGES)
        .putShort(30, (short) 0) // map_alignment
        .putInt(32, 0);
    for (int i = 36; i < 64; i += 4) {
      out.putInt(i, 0);
    }
    return 64;
  }

  /**
   * Answers one request (every opcode but FUSE_INIT and FUSE_INTERRUPT, which the dispatcher
   * handles).
   *
   * @param in the request body (after {@code fuse_in_header}), position 0
   * @param out the reply payload buffer (after {@code fuse_out_header}), position 0
   * @param payload where a READ may lend its bytes instead of writing them to {@code out}
   * @return the payload length in bytes
   * @throws IOException when the image cannot be read (EIO)
   * @throws FuseException for every other errno answer
   */
  int handle(FuseOpcode op, long nodeid, ByteBuffer in, ByteBuffer out, ReplyPayload payload)
      throws IOException {
    if (op.writes() && !(fs.writable() && WRITABLE_OPS.contains(op))) {
      throw new FuseException(Errno.EROFS, "read-only");
    }
    return switch (op) {
      case FUSE_WRITE -> write(nodeid, in, out);
      case FUSE_FALLOCATE -> fallocate(nodeid, in);
      case FUSE_SETATTR -> setattr(nodeid, in, out);
      case FUSE_FSYNC, FUSE_FSYNCDIR -> fsync(nodeid);
      case FUSE_LOOKUP -> lookup(nodeid, cString(in, 0), out);
      case FUSE_GETATTR -> getattr(nodeid, out);
      case FUSE_OPEN -> open(nodeid, in.getInt(0), out);
      case FUSE_READ -> read(in.getLong(0), nodeid, in.getLong(8), in.getInt(16), out, payload);
      case FUSE_LSEEK -> lseek(nodeid, in.getLong(8), in.getInt(16), out);
      case FUSE_OPENDIR -> opendir(nodeid, out);
      case FUSE_READDIR -> readdir(nodeid, in.getLong(8), in.getInt(16), out);
      case FUSE_STATFS -> statfs(out);
      case FUSE_ACCESS -> access(nodeid, in.getInt(0));
      case FUSE_GETXATTR -> getxattr(nodeid, in.getInt(0), cString(in, 8), out);
      case FUSE_LISTXATTR -> listxattr(in.getInt(0), out);
      case FUSE_RELEASE -> release(in.getLong(0));
      case FUSE_RELEASEDIR, FUSE_FLUSH, FUSE_DESTROY -> 0; // close(2) promises no durability
      case FUSE_FORGET, FUSE_BATCH_FORGET -> 0; // inodes are fixed; nothing to forget
      default -> throw new FuseException(Errno.ENOSYS, "not implemented");
    };
  }

  /** The opcodes that change a file, answered on a writable mount; the rest stay EROFS. */
  private static final java.util.Set<FuseOpcode> WRITABLE_OPS =
      java.util.EnumSet.of(
          FuseOpcode.FUSE_WRITE, FuseOpcode.FUSE_FALLOCATE, FuseOpcode.FUSE_SETATTR);

  /**
   * FUSE_WRITE: {@code fuse_write_in} (40 bytes) then the data -> {@code fuse_write_out} (8 bytes):
   * the bytes written.
   */
  private int write(long nodeid, ByteBuffer in, ByteBuffer out) throws IOException {
    long offset = in.getLong(8);
    int size = in.getInt(16);
    ByteBuffer data = in.slice(40, Math.min(size, in.limit() - 40));
    int n = fs.file(nodeid).write(data, offset);
    out.putInt(0, n).putInt(4, 0);
    return 8;
  }

  /** FUSE_FALLOCATE: {@code fuse_fallocate_in} (fh, offset, length, mode) -> no payload. */
  private int fallocate(long nodeid, ByteBuffer in) throws IOException {
    fs.file(nodeid).fallocate(in.getInt(24), in.getLong(8), in.getLong(16));
    return 0;
  }

  /** FUSE_FSYNC (a file) or FUSE_FSYNCDIR (the root: every file) -> no payload. */
  private int fsync(long nodeid) throws IOException {
    fs.fsync(nodeid);
    return 0;
  }

  private static final int FATTR_MODE = 1;
  private static final int FATTR_UID = 2;
  private static final int FATTR_GID = 4;
  private static final int FATTR_SIZE = 8;

  /**
   * FUSE_SETATTR ({@code fuse_setattr_in}) -> {@code fuse_attr_out}: times are accepted and left as
   * they are (the image file's); a change of size (the disk's), mode or owner is EPERM.
   */
  private int setattr(long nodeid, ByteBuffer in, ByteBuffer out) {
    int valid = in.getInt(0);
    fs.checkAttributeChange(
        nodeid,
        (valid & FATTR_SIZE) != 0 ? in.getLong(16) : -1,
        (valid & FATTR_MODE) != 0 ? in.getInt(68) : -1,
        (valid & FATTR_UID) != 0 ? in.getInt(76) : -1,
        (valid & FATTR_GID) != 0 ? in.getInt(80) : -1);
    return getattr(nodeid, out);
  }

  private static String cString(ByteBuffer in, int from) {
    int end = from;
    while (end < in.limit() && in.get(end) != 0) {
      end++;
    }
    byte[] bytes = new byte[end - from];
    in.get(from, bytes);
    return new String(bytes, StandardCharsets.UTF_8);
  }

  /**
   * How long the kernel may keep {@code nodeid}'s attributes: an hour, but a second while a flat
   * file's st_blocks is still the bound, so that the exact count reaches stat once it is known.
   */
  private long attrValidSeconds(long nodeid) {
    return nodeid == FlatFileSystem.ROOT_INODE || fs.file(nodeid).dataCount().exact()
        ? VALID_SECONDS
        : 1;
  }

  /** FUSE_LOOKUP -> {@code fuse_entry_out} (128 bytes). */
  private int lookup(long parent, String name, ByteBuffer out) {
    if (parent != FlatFileSystem.ROOT_INODE) {
      throw new FuseException(Errno.ENOTDIR, "not a directory");
    }
    FlatFile f = fs.lookup(name);
    out.putLong(0, f.inode())
        .putLong(8, 0) // generation
        .putLong(16, VALID_SECONDS) // entry_valid
        .putLong(24, attrValidSeconds(f.inode())) // attr_valid
        .putInt(32, 0)
        .putInt(36, 0);
    putAttr(out, 40, f.inode());
    return 128;
  }

  /** FUSE_GETATTR -> {@code fuse_attr_out} (104 bytes). */
  private int getattr(long nodeid, ByteBuffer out) {
    out.putLong(0, attrValidSeconds(nodeid)).putInt(8, 0).putInt(12, 0);
    putAttr(out, 16, nodeid);
    return 104;
  }

  /** {@code struct fuse_attr} (88 bytes) of {@code nodeid} at {@code at}. */
  private void putAttr(ByteBuffer out, int at, long nodeid) {
    Attributes a = fs.attributes(nodeid);
    long millis = a.mtimeMillis();
    long seconds = Math.floorDiv(millis, 1000);
    int nanos = (int) Math.floorMod(millis, 1000) * 1_000_000;
    out.putLong(at, nodeid)
        .putLong(at + 8, a.size())
        .putLong(at + 16, a.blocks())
        .putLong(at + 24, seconds) // atime
        .putLong(at + 32, seconds) // mtime
        .putLong(at + 40, seconds) // ctime
        .putInt(at + 48, nanos)
        .putInt(at + 52, nanos)
        .putInt(at + 56, nanos)
        .putInt(at + 60, a.mode())
        .putInt(at + 64, a.nlink())
        .putInt(at + 68, a.uid())
        .putInt(at + 72, a.gid())
        .putInt(at + 76, 0) // rdev
        .putInt(at + 80, BLKSIZE)
        .putInt(at + 84, 0); // flags
  }

  /**
   * FUSE_OPEN -> {@code fuse_open_out} (16 bytes): a new file handle, FOPEN_KEEP_CACHE (the image
   * does not change, so the page cache stays valid across opens). Reads go through the kernel's
   * page cache and its readahead, which asks for the next READs while cp is still writing; {@link
   * DropBehind} keeps a sequential reader from filling the cache with the whole file.
   *
   * <p>Why cached with drop-behind, and why no FUSE_NOTIFY_STORE push: the measurements are in
   * docs/decisions/page-cache-and-push.md.
   */
  private int open(long nodeid, int flags, ByteBuffer out) {
    FlatFile f = fs.checkOpen(nodeid, flags);
    long fh = nextHandle.getAndIncrement();
    long inode = f.inode();
    open.put(
        fh,
        new Handle(
            f.readAhead().openStream(),
            new DropBehind((offset, length) -> notifier.invalInode(inode, offset, length))));
    out.putLong(0, fh).putInt(8, FOPEN_KEEP_CACHE | FOPEN_NOFLUSH).putInt(12, 0);
    return 16;
  }

  /**
   * FUSE_READ: the bytes, read straight into the reply buffer, or lent to the reply from the
   * read-ahead windows that hold them all; short at the end of the file.
   */
  private int read(
      long fh, long nodeid, long offset, int length, ByteBuffer out, ReplyPayload payload)
      throws IOException {
    FlatFile f = fs.file(nodeid);
    int n = Math.min(length, out.capacity());
    Handle h = open.get(fh);
    if (h == null || h.reader.image() != f.readAhead()) {
      return fs.read(f, out.limit(n), offset);
    }
    int read = fs.read(h.reader, out.limit(n), offset, payload);
    h.dropBehind.read(offset, read);
    return read;
  }

  /** FUSE_RELEASE: the file handle ends. */
  private int release(long fh) {
    Handle h = open.remove(fh);
    if (h != null) {
      h.reader.close();
    }
    return 0;
  }

  /** FUSE_LSEEK ({@code fuse_lseek_in}) -> {@code fuse_lseek_out} (8 bytes). */
  private int lseek(long nodeid, long offset, int whence, ByteBuffer out) throws IOException {
    out.putLong(0, fs.seek(fs.file(nodeid), offset, whence));
    return 8;
  }

  private int opendir(long nodeid, ByteBuffer out) {
    if (nodeid != FlatFileSystem.ROOT_INODE) {
      throw new FuseException(Errno.ENOTDIR, "not a directory");
    }
    out.putLong(0, 0).putInt(8, FOPEN_KEEP_CACHE).putInt(12, 0);
    return 16;
  }

  /**
   * FUSE_READDIR: {@code struct fuse_dirent} records (ino, next offset, namelen, type, name padded
   * to 8 bytes) from entry {@code offset} on: ".", "..", then the flat files.
   */
  private int readdir(long nodeid, long offset, int maxBytes, ByteBuffer out) {
    if (nodeid != FlatFileSystem.ROOT_INODE) {
      throw new FuseException(Errno.ENOTDIR, "not a directory");
    }
    List<FlatFile> files = fs.files();
    int pos = 0;
    for (long i = Math.max(0, offset); i < files.size() + 2; i++) {
      String name = i == 0 ? "." : i == 1 ? ".." : files.get((int) i - 2).name();
      long ino = i < 2 ? FlatFileSystem.ROOT_INODE : files.get((int) i - 2).inode();
      byte[] bytes = name.getBytes(StandardCharsets.UTF_8);
      int record = (24 + bytes.length + 7) & ~7;
      if (pos + record > Math.min(maxBytes, out.capacity())) {
        break;
      }
      out.putLong(pos, ino)
          .putLong(pos + 8, i + 1)
          .putInt(pos + 16, bytes.length)
          .putInt(pos + 20, i < 2 ? DT_DIR : DT_REG);
      out.put(pos + 24, bytes);
      for (int p = pos + 24 + bytes.length; p < pos + record; p++) {
        out.put(p, (byte) 0);
      }
      pos += record;
    }
    return pos;
  }

  /** FUSE_STATFS -> {@code fuse_statfs_out} (80 bytes). */
  private int statfs(ByteBuffer out) {
    FsStats st = fs.stats();
    out.putLong(0, st.blocks())
        .putLong(8, 0) // bfree
        .putLong(16, 0) // bavail
        .putLong(24, st.files())
        .putLong(32, 0) // ffree
        .putInt(40, st.blockBytes())
        .putInt(44, st.nameMax())
        .putInt(48, st.blockBytes()); // frsize
    for (int i = 52; i < 80; i += 4) {
      out.putInt(i, 0);
    }
    return 80;
  }

  private int access(long nodeid, int mask) {
    fs.checkAccess(nodeid, mask);
    return 0;
  }

  /**
   * FUSE_GETXATTR: {@code fuse_getxattr_out} (the length) when asked with size 0, else the value.
   */
  private int getxattr(long nodeid, int size, String name, ByteBuffer out) {
    byte[] value = fs.xattr(nodeid, name);
    if (size == 0) {
      out.putInt(0, value.length).putInt(4, 0);
      return 8;
    }
    if (size < value.length) {
      throw new FuseException(Errno.ERANGE, name);
    }
    out.put(0, value);
    return value.length;
  }

  /** FUSE_LISTXATTR: no attributes are listed. */
  private int listxattr(int size, ByteBuffer out) {
    if (size == 0) {
      out.putInt(0, 0).putInt(4, 0);
      return 8;
    }
    return 0;
  }
}
