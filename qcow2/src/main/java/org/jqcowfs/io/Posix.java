package org.jqcowfs.io;

import static org.jqcowfs.io.NativeFunction.libc;

import com.kenai.jffi.Invoker;
import com.kenai.jffi.LastError;
import com.kenai.jffi.MemoryIO;
import com.kenai.jffi.Type;
import java.nio.charset.StandardCharsets;

/**
 * The few libc calls the qcow2 core needs beyond {@link java.nio.channels.FileChannel}: {@code
 * lseek(SEEK_DATA | SEEK_HOLE)}, {@code fstat} for {@code st_blocks}, {@code fcntl} OFD locks,
 * {@code cachestat} (whether a range is in the page cache) and {@code mmap}. Every call returns
 * what the C function does (-1 on failure) and saves {@code errno} for {@link #errno()}. Constants
 * and layouts are Linux's on x86_64 and aarch64.
 *
 * <p>Called through jffi, the library beneath jnr-ffi, with one call context per C signature, not
 * through a jnr-ffi interface: jnr-ffi generates an interface's stubs at run time (ASM classes and
 * a proxy class per annotation type, 11 of them here), which the class data sharing archive cannot
 * hold, and every command that opens an image waited for that (figures:
 * docs/decisions/native-binding-jffi.md).
 */
public final class Posix {
  public static final int O_RDONLY = 0;
  public static final int O_RDWR = 2;
  public static final int FALLOC_FL_KEEP_SIZE = 1;
  public static final int FALLOC_FL_PUNCH_HOLE = 2;

  /** {@code O_DIRECT}: 040000 on x86_64, 0200000 on aarch64. */
  public static final int O_DIRECT =
      "aarch64".equals(System.getProperty("os.arch")) ? 0200000 : 040000;

  public static final int O_CLOEXEC = 02000000;
  public static final int SEEK_DATA = 3;
  public static final int SEEK_HOLE = 4;
  public static final int EINTR = 4;
  public static final int ENXIO = 6;
  public static final int EAGAIN = 11;
  public static final int ENOSYS = 38;

  /** {@code EOPNOTSUPP}: the file system does not do that (fallocate on a block device). */
  public static final int EOPNOTSUPP = 95;

  public static final int PROT_READ = 1;
  public static final int MAP_SHARED = 1;

  /** {@code MAP_POPULATE}: map every page of the range at once (0x8000 on x86_64 and aarch64). */
  public static final int MAP_POPULATE = 0x8000;

  /** {@code MAP_FAILED}, what {@link #mmap} returns on failure. */
  public static final long MAP_FAILED = -1;

  /** {@code cachestat(2)}'s system call number (Linux 6.5; the same on x86_64 and aarch64). */
  static final long SYS_CACHESTAT = 451;

  /** {@code sizeof(struct stat)} in bytes (144 on x86_64, 128 on aarch64; the larger is used). */
  private static final int STAT_BYTES = 144;

  /** Byte offset of {@code st_blocks} (512-byte units) in {@code struct stat}, on both. */
  private static final int STAT_BLOCKS_OFFSET = 64;

  /**
   * {@code struct flock}, 32 bytes: l_type (short, offset 0), l_whence (short, 2), l_start (off_t,
   * 8), l_len (off_t, 16), l_pid (int, 24; 0 for OFD locks).
   */
  private static final int FLOCK_BYTES = 32;

  private static final Type INT = Type.SINT32;
  private static final Type LONG = Type.SINT64;
  private static final Type POINTER = Type.POINTER;

  private static final Invoker INVOKER = Invoker.getInstance();
  private static final MemoryIO MEMORY = MemoryIO.getInstance();

  private static final NativeFunction OPEN = libc("open", INT, POINTER, INT);
  private static final NativeFunction CLOSE = libc("close", INT, INT);
  private static final NativeFunction LSEEK = libc("lseek", LONG, INT, LONG, INT);
  private static final NativeFunction FSTAT = libc("fstat", INT, INT, POINTER);
  private static final NativeFunction FCNTL = libc("fcntl", INT, INT, INT, POINTER);
  private static final NativeFunction GETPAGESIZE = libc("getpagesize", INT);
  private static final NativeFunction MMAP =
      libc("mmap", POINTER, POINTER, LONG, INT, INT, INT, LONG);
  private static final NativeFunction FALLOCATE = libc("fallocate", INT, INT, INT, LONG, LONG);
  private static final NativeFunction SYNC_FILE_RANGE =
      libc("sync_file_range", INT, INT, LONG, LONG, INT);
  private static final NativeFunction MUNMAP = libc("munmap", INT, POINTER, LONG);
  private static final NativeFunction FTRUNCATE = libc("ftruncate", INT, INT, LONG);
  private static final NativeFunction STRERROR = libc("strerror", POINTER, INT);

  /** {@code long syscall(long number, ...)}: variadic after the number; five arguments passed. */
  private static final NativeFunction SYSCALL =
      libc("syscall", 1, LONG, LONG, LONG, LONG, LONG, LONG, LONG);

  private Posix() {}

  /** Makes sure the calls are bound (loads jffi's native library); a no-op once done. */
  public static void load() {
    // the static initialiser did it
  }

  /** {@code open(path, flags)}: a file descriptor, or -1. */
  public static int open(String path, int flags) {
    byte[] name = path.getBytes(StandardCharsets.UTF_8);
    long buf = MEMORY.allocateMemory(name.length + 1, false);
    try {
      MEMORY.putZeroTerminatedByteArray(buf, name, 0, name.length);
      return (int) INVOKER.invokeN2(OPEN.context(), OPEN.address(), buf, flags);
    } finally {
      MEMORY.freeMemory(buf);
    }
  }

  /** {@code fallocate(fd, mode, offset, len)}: 0, or -1. */
  public static int fallocate(int fd, int mode, long offset, long length) {
    return (int)
        INVOKER.invokeN4(FALLOCATE.context(), FALLOCATE.address(), fd, mode, offset, length);
  }

  /** {@code sync_file_range}'s flag: start writeback of the dirty pages, do not wait. */
  public static final int SYNC_FILE_RANGE_WRITE = 2;

  /** {@code sync_file_range(fd, offset, nbytes, flags)}: 0, or -1. */
  public static int syncFileRange(int fd, long offset, long length, int flags) {
    return (int)
        INVOKER.invokeN4(
            SYNC_FILE_RANGE.context(), SYNC_FILE_RANGE.address(), fd, offset, length, flags);
  }

  /** {@code ftruncate(fd, length)}: 0, or -1. */
  public static int ftruncate(int fd, long length) {
    return (int) INVOKER.invokeN2(FTRUNCATE.context(), FTRUNCATE.address(), fd, length);
  }

  /** {@code close(fd)}: 0, or -1. */
  public static int close(int fd) {
    return (int) INVOKER.invokeN1(CLOSE.context(), CLOSE.address(), fd);
  }

  /** {@code lseek(fd, offset, whence)}: the new offset in bytes, or -1. */
  public static long lseek(int fd, long offset, int whence) {
    return INVOKER.invokeN3(LSEEK.context(), LSEEK.address(), fd, offset, whence);
  }

  /** {@code fstat(fd)}'s {@code st_blocks} (units of 512 bytes), or -1. */
  public static long stBlocks(int fd) {
    long stat = MEMORY.allocateMemory(STAT_BYTES, true);
    try {
      if ((int) INVOKER.invokeN2(FSTAT.context(), FSTAT.address(), fd, stat) != 0) {
        return -1;
      }
      return MEMORY.getLong(stat + STAT_BLOCKS_OFFSET);
    } finally {
      MEMORY.freeMemory(stat);
    }
  }

  /**
   * {@code fcntl(fd, cmd, &flock)} with a {@code struct flock} of {@code type} on {@code length}
   * bytes at byte {@code start} ({@code SEEK_SET}, {@code l_pid} 0, as OFD locks require).
   *
   * @return the {@code l_type} the call left in the struct (for {@code F_OFD_GETLK}: {@code
   *     F_UNLCK} when nothing conflicts), or -1 when the call failed
   */
  public static int fcntlLock(int fd, int cmd, short type, long start, long length) {
    long flock = MEMORY.allocateMemory(FLOCK_BYTES, true);
    try {
      MEMORY.putShort(flock, type);
      MEMORY.putLong(flock + 8, start);
      MEMORY.putLong(flock + 16, length);
      if ((int) INVOKER.invokeN3(FCNTL.context(), FCNTL.address(), fd, cmd, flock) < 0) {
        return -1;
      }
      return MEMORY.getShort(flock);
    } finally {
      MEMORY.freeMemory(flock);
    }
  }

  /**
   * {@code syscall(number, a, b, c, d, e)}: what the system call returns, or -1. A call that takes
   * fewer arguments ignores the rest (pass 0).
   */
  public static long syscall(long number, long a, long b, long c, long d, long e) {
    return INVOKER.invokeN6(SYSCALL.context(), SYSCALL.address(), number, a, b, c, d, e);
  }

  /**
   * {@code syscall(SYS_CACHESTAT, fd, &range, &cstat, 0)}: how many pages of {@code bytes} bytes at
   * {@code offset} the page cache holds ({@code nr_cache}), or -1 (ENOSYS before Linux 6.5). Reads
   * nothing and starts no I/O.
   */
  public static long cachedPages(int fd, long offset, long bytes) {
    long mem = MEMORY.allocateMemory(16 + 40, true); // struct cachestat_range, struct cachestat
    try {
      MEMORY.putLong(mem, offset);
      MEMORY.putLong(mem + 8, bytes);
      long r = syscall(SYS_CACHESTAT, fd, mem, mem + 16, 0, 0);
      return r != 0 ? -1 : MEMORY.getLong(mem + 16);
    } finally {
      MEMORY.freeMemory(mem);
    }
  }

  /** {@code getpagesize()}: the page size in bytes. */
  public static int getpagesize() {
    return (int) INVOKER.invokeN0(GETPAGESIZE.context(), GETPAGESIZE.address());
  }

  /**
   * {@code mmap(NULL, length, prot, flags, fd, offset)}: the mapping's address, or {@link
   * #MAP_FAILED}. {@code offset} must be a multiple of the page size.
   */
  public static long mmap(long length, int prot, int flags, int fd, long offset) {
    return INVOKER.invokeN6(MMAP.context(), MMAP.address(), 0, length, prot, flags, fd, offset);
  }

  /** {@code munmap(address, length)}: 0, or -1. */
  public static int munmap(long address, long length) {
    return (int) INVOKER.invokeN2(MUNMAP.context(), MUNMAP.address(), address, length);
  }

  /**
   * {@code errno} in words, as the JDK's own I/O errors give it: {@code strerror(errno)} then the
   * number, e.g. "No space left on device (errno 28)".
   */
  public static String describe(int errno) {
    long text = INVOKER.invokeN1(STRERROR.context(), STRERROR.address(), errno);
    String words =
        text == 0
            ? "error"
            : new String(MEMORY.getZeroTerminatedByteArray(text), StandardCharsets.UTF_8);
    return words + " (errno " + errno + ")";
  }

  /** The errno saved by the calling thread's last call above. */
  public static int errno() {
    return LastError.getInstance().get();
  }
}
