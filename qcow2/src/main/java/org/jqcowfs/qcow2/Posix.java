package org.jqcowfs.qcow2;

import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.SaveError;

/**
 * The few libc calls the qcow2 core needs beyond {@link java.nio.channels.FileChannel}: {@code
 * lseek(SEEK_DATA | SEEK_HOLE)}, {@code fstat} for {@code st_blocks}, and {@code fcntl} OFD locks.
 * One small jnr-ffi binding instead of jnr-posix, whose full libc binding cost 0.16 s at every
 * start. Constants and layouts are Linux's on x86_64 and aarch64.
 */
public interface Posix {
  /** The binding, loaded once. */
  Posix LIBC = LibraryLoader.create(Posix.class).load("c");

  int O_RDONLY = 0;
  int O_CLOEXEC = 02000000;
  int SEEK_DATA = 3;
  int SEEK_HOLE = 4;
  int ENXIO = 6;

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

  /** The errno saved by the calling thread's last call above. */
  static int errno() {
    return Runtime.getRuntime(LIBC).getLastError();
  }

  /** Native memory of {@code bytes} bytes, freed by the garbage collector. */
  static Pointer allocate(int bytes) {
    return jnr.ffi.Memory.allocate(Runtime.getRuntime(LIBC), bytes);
  }
}
