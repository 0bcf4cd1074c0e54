package org.jqcowfs.fuse.transport;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import org.jqcowfs.fuse.protocol.Errno;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Sends {@code FUSE_NOTIFY_INVAL_INODE} to the kernel: drop the page cache of a byte range of a
 * file. The message is {@code fuse_out_header} (unique 0, error = the notify code) followed by
 * {@code struct fuse_notify_inval_inode_out} {ino, off, len}, as in the kernel's {@code
 * include/uapi/linux/fuse.h} (libfuse: {@code fuse_lowlevel_notify_inval_inode}).
 *
 * <p>The messages are written on a thread of their own, never on a worker: the kernel locks each
 * cached page it drops, and a page whose READ is still being answered stays locked until a worker
 * answers it (libfuse warns of that deadlock). Thread-safe.
 */
final class InvalInodeNotifier implements AutoCloseable {
  private static final Logger LOG = LoggerFactory.getLogger(InvalInodeNotifier.class);

  /** {@code FUSE_NOTIFY_INVAL_INODE}, the notify code carried in {@code fuse_out_header.error}. */
  static final int FUSE_NOTIFY_INVAL_INODE = 2;

  /** Header (16 bytes) + {@code fuse_notify_inval_inode_out} (24 bytes). */
  static final int MESSAGE_BYTES = DevFuseReply.OUT_HEADER_BYTES + 24;

  private final int fd;
  private final ExecutorService thread =
      Executors.newSingleThreadExecutor(
          r -> {
            Thread t = new Thread(r, "fuse-notify");
            t.setDaemon(true);
            return t;
          });

  /** Written by {@link #thread} only. */
  private final ByteBuffer message =
      ByteBuffer.allocateDirect(MESSAGE_BYTES).order(ByteOrder.nativeOrder());

  /**
   * @param fd the {@code /dev/fuse} fd of the mount
   */
  InvalInodeNotifier(int fd) {
    this.fd = fd;
  }

  /**
   * Asks the kernel, soon and in the background, to drop its page cache of bytes [{@code offset},
   * {@code offset + length}) of inode {@code nodeid}. Does nothing once closed.
   */
  void invalInode(long nodeid, long offset, long length) {
    try {
      thread.execute(() -> write(nodeid, offset, length));
    } catch (RejectedExecutionException e) {
      // closed: the mount is going away, and its page cache with it
    }
  }

  private void write(long nodeid, long offset, long length) {
    message
        .putInt(0, MESSAGE_BYTES)
        .putInt(4, FUSE_NOTIFY_INVAL_INODE)
        .putLong(8, 0) // unique 0: a notification
        .putLong(16, nodeid)
        .putLong(24, offset)
        .putLong(32, length);
    if (LibC.write(fd, message, MESSAGE_BYTES) < 0) {
      int err = LibC.errno();
      // ENOENT: the kernel holds no inode (so no cache) for it; ENODEV: unmounted
      if (err != Errno.ENOENT && err != Errno.ENODEV) {
        LOG.warn("FUSE_NOTIFY_INVAL_INODE of inode {}: {}", nodeid, LibC.strerror(err));
      }
    }
  }

  /** Stops; messages not yet written are dropped. */
  @Override
  public void close() {
    thread.shutdownNow();
  }
}
