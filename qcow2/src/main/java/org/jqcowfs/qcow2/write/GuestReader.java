package org.jqcowfs.qcow2.write;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * What the qcow2 write side reads of the disk it writes: the guest bytes as they read now (this
 * layer, then its backing image, then zeros), for the head and tail of a copy-on-write (QEMU {@code
 * perform_cow}), and whether a range reads as zeros (QEMU {@code is_zero}). Thread-safe.
 */
public interface GuestReader {

  /** The virtual disk size in bytes. */
  long size();

  /**
   * Reads {@code dst.remaining()} guest bytes at {@code guestOffset}, as {@code Image#read}.
   *
   * @throws IOException on an I/O error or damaged metadata in the range
   */
  void read(ByteBuffer dst, long guestOffset) throws IOException;

  /**
   * Whether block status says zeros for all of {@code [guestOffset, guestOffset + bytes)}, clamped
   * to the disk: through this layer, then through its backing image (QEMU {@code is_zero}).
   *
   * @throws IOException on an I/O error or damaged metadata in the range
   */
  boolean isZero(long guestOffset, long bytes) throws IOException;
}
