package org.jqcowfs.io;

import java.io.Closeable;
import java.io.IOException;
import java.nio.file.Path;

/**
 * QEMU's image locking for a reader: open file description (OFD) byte locks on the image file, the
 * protocol of QEMU's {@code block/file-posix.c} ({@code raw_apply_lock_bytes}, {@code
 * raw_check_lock_bytes}). Byte {@code 100 + i} is read-locked by every holder of permission bit
 * {@code i}; byte {@code 200 + i} by every holder that does not share it. Bits (QEMU {@code
 * BLK_PERM_*}): 0 consistent read, 1 write, 2 write unchanged, 3 resize.
 *
 * <p>A reader takes what {@code qemu-img} takes for a read-only open without {@code -U}: it holds
 * "consistent read" (byte 100) and does not share "write" or "resize" (bytes 201, 203). So a QEMU
 * process that writes the image makes {@link #acquire} fail, and while the lock is held QEMU cannot
 * open the image for writing ("Failed to get "write" lock"). Readers share with each other.
 *
 * <p>The lock lives on its own file descriptor and ends with {@link #close}.
 */
public final class ImageLock implements Closeable {
  static final int PERM_BASE = 100;
  static final int SHARED_BASE = 200;
  static final int PERM_CONSISTENT_READ = 0;
  static final int PERM_WRITE = 1;
  static final int PERM_RESIZE = 3;

  // <fcntl.h>, x86_64 and aarch64 Linux.
  private static final int F_OFD_GETLK = 36;
  private static final int F_OFD_SETLK = 37;
  private static final short F_RDLCK = 0;
  private static final short F_WRLCK = 1;
  private static final short F_UNLCK = 2;

  private final Path path;
  private int fd;

  private ImageLock(Path path, int fd) {
    this.path = path;
    this.fd = fd;
  }

  /**
   * Takes the shared locks of a reader on {@code path}, then checks that no other process holds a
   * conflicting one (the order QEMU uses, so that two openers cannot both miss each other).
   *
   * @throws IOException naming the file and the permission when another process writes or resizes
   *     the image, or does not share reading it; or if the file cannot be opened or locked
   */
  public static ImageLock acquire(Path path) throws IOException {
    int fd = Posix.open(path.toString(), Posix.O_RDONLY | Posix.O_CLOEXEC);
    if (fd < 0) {
      throw new IOException(path + ": open for locking failed: errno " + errno());
    }
    ImageLock lock = new ImageLock(path, fd);
    try {
      lock.set(PERM_BASE + PERM_CONSISTENT_READ);
      lock.set(SHARED_BASE + PERM_WRITE);
      lock.set(SHARED_BASE + PERM_RESIZE);
      // We hold "consistent read": nobody may refuse to share it.
      lock.refuseIfHeld(
          SHARED_BASE + PERM_CONSISTENT_READ,
          "\"consistent read\" lock",
          "does not let others read");
      // We share neither "write" nor "resize": nobody may hold them.
      lock.refuseIfHeld(PERM_BASE + PERM_WRITE, "shared \"write\" lock", "has it open for writing");
      lock.refuseIfHeld(PERM_BASE + PERM_RESIZE, "shared \"resize\" lock", "may resize it");
      return lock;
    } catch (IOException e) {
      lock.close();
      throw e;
    }
  }

  /**
   * Takes the locks of a writer on {@code path}, as QEMU's {@code qemu-io} or a VM writing the
   * image holds them: "consistent read" and "write" (bytes 100, 101), sharing neither "write" nor
   * "resize" (bytes 201, 203); then checks that no other process reads without sharing writes
   * (holds 201), writes (101), resizes (103), or refuses to share reading or writing (200, 201).
   *
   * @throws IOException naming the file and the permission when another process holds a conflicting
   *     lock (a QEMU reader or writer, another jqcowfs), or if the file cannot be opened or locked
   */
  public static ImageLock acquireForWrite(Path path) throws IOException {
    ImageLock lock = acquire(path);
    try {
      lock.set(PERM_BASE + PERM_WRITE);
      lock.refuseIfHeld(SHARED_BASE + PERM_WRITE, "\"write\" lock", "does not let others write");
      return lock;
    } catch (IOException e) {
      lock.close();
      throw e;
    }
  }

  private void set(int offset) throws IOException {
    if (Posix.fcntlLock(fd, F_OFD_SETLK, F_RDLCK, offset, 1) < 0) {
      int errno = errno();
      throw new IOException(
          path
              + ": cannot take QEMU's shared lock on byte "
              + offset
              + " (errno "
              + errno
              + "); another process holds it exclusively. Use --force-share to read anyway");
    }
  }

  /** QEMU's wording: {@code Failed to get shared "write" lock}. */
  private void refuseIfHeld(int offset, String what, String why) throws IOException {
    int held = Posix.fcntlLock(fd, F_OFD_GETLK, F_WRLCK, offset, 1);
    if (held < 0) {
      throw new IOException(path + ": F_OFD_GETLK on byte " + offset + ": errno " + errno());
    }
    if (held != F_UNLCK) {
      throw new IOException(
          path
              + ": failed to get "
              + what
              + ": another process (a VM, qemu-img or qemu-io) "
              + why
              + " (QEMU lock byte "
              + offset
              + "). Use --force-share to read it anyway, at the risk of data changing underneath");
    }
  }

  private static int errno() {
    return Posix.errno();
  }

  /** The file this lock is on. */
  public Path path() {
    return path;
  }

  /** Releases the locks (closes their file descriptor). Idempotent. */
  @Override
  public synchronized void close() {
    if (fd >= 0) {
      Posix.close(fd);
      fd = -1;
    }
  }
}
