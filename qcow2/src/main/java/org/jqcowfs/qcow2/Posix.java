package org.jqcowfs.qcow2;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.In;
import jnr.ffi.annotations.Out;
import jnr.ffi.annotations.SaveError;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;

/**
 * The few libc calls the qcow2 core needs beyond {@link java.nio.channels.FileChannel}: {@code
 * lseek(SEEK_DATA | SEEK_HOLE)}, {@code fstat} for {@code st_blocks}, {@code fcntl} OFD locks, and
 * {@code cachestat} (whether a range is in the page cache). One small jnr-ffi binding instead of
 * jnr-posix, whose full libc binding cost 0.16 s at every start. Constants and layouts are Linux's
 * on x86_64 and aarch64.
 */
public interface Posix {
  /** The binding, loaded once. */
  Posix LIBC = LibraryLoader.create(Posix.class).load("c");

  int O_RDONLY = 0;

  /** {@code O_DIRECT}: 040000 on x86_64, 0200000 on aarch64. */
  int O_DIRECT =
      jnr.ffi.Platform.getNativePlatform().getCPU() == jnr.ffi.Platform.CPU.X86_64
          ? 040000
          : 0200000;

  int O_CLOEXEC = 02000000;
  int SEEK_DATA = 3;
  int SEEK_HOLE = 4;
  int EINTR = 4;
  int ENXIO = 6;
  int EAGAIN = 11;
  int ENOSYS = 38;

  int PROT_READ = 1;
  int MAP_SHARED = 1;

  /** {@code MAP_POPULATE}: map every page of the range at once (0x8000 on x86_64 and aarch64). */
  int MAP_POPULATE = 0x8000;

  /** {@code cachestat(2)}'s system call number (Linux 6.5; the same on x86_64 and aarch64). */
  long SYS_CACHESTAT = 451;

  /** Counters {@code cachestat(2)} writes ({@code struct cachestat}: five {@code __u64}). */
  int CACHESTAT_FIELDS = 5;

  /** {@code sizeof(struct stat)} in bytes (144 on x86_64, 128 on aarch64; the larger is used). */
  int STAT_BYTES = 144;

  /** Byte offset of {@code st_blocks} (512-byte units) in {@code struct stat}, on both. */
  int STAT_BLOCKS_OFFSET = 64;

  @SaveError
  int open(String path, int flags);

  @SaveError
  int close(int fd);

  @SaveError
  long lseek(int fd, long offset, int whence);

  @SaveError
  int fstat(int fd, Pointer stat);

  @SaveError
  int fcntl(int fd, int cmd, Pointer flock);

  /**
   * {@code syscall(SYS_CACHESTAT, fd, range, cstat, flags)}: how many pages of {@code range}
   * ({@code struct cachestat_range}: offset and length in bytes) the page cache holds, in {@code
   * cstat[0]} ({@code nr_cache}). Reads nothing and starts no I/O. -1 with ENOSYS before Linux 6.5.
   */
  @SaveError
  long syscall(long number, int fd, @In long[] range, @Out long[] cstat, int flags);

  int getpagesize();

  /**
   * {@code mmap(addr, length, prot, flags, fd, offset)}: the mapping, or address -1 ({@code
   * MAP_FAILED}) with errno set. {@code offset} must be a multiple of the page size. (Declared as
   * {@code long mmap(long, long, int, int, int, long)}, jnr-ffi 2.2.16 passed glibc a wrong offset:
   * EINVAL before any system call. This declaration works.)
   */
  @SaveError
  Pointer mmap(Pointer addr, @size_t long length, int prot, int flags, int fd, @off_t long offset);

  /** {@code munmap(addr, length)}: 0, or -1 with errno set. */
  @SaveError
  int munmap(Pointer addr, @size_t long length);

  /** The errno saved by the calling thread's last call above. */
  static int errno() {
    return Runtime.getRuntime(LIBC).getLastError();
  }

  /** Native memory of {@code bytes} bytes, freed by the garbage collector. */
  static Pointer allocate(int bytes) {
    return jnr.ffi.Memory.allocate(Runtime.getRuntime(LIBC), bytes);
  }
}
