package org.jqcowfs.convert;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Where a {@link Converter} writes the virtual disk: a raw file ({@link RawTarget}) or a new qcow2
 * image ({@link Qcow2Target}). Its methods are called from many worker threads at once.
 */
public interface ConvertTarget {
  /** Zero-detection block in bytes: a block of zeros in data is not written (a power of two). */
  int zeroBlock();

  /**
   * Guest bytes every chunk starts and ends on (but the disk's end): 1, or the cluster size of a
   * qcow2 target, whose clusters are then each decided as a whole.
   */
  int alignment();

  /**
   * The virtual bytes of the target's backing file (qemu-img convert {@code -B}), or -1 without
   * one. With one, only what the source's top layer holds is converted, and zeros before this
   * offset are written as zeros, since the target does not read as zeros there by itself.
   */
  long backingBytes();

  /**
   * Whether chunks a worker had to decompress are written one at a time (a raw file; see {@link
   * Converter}); false where writing costs CPU that must run on all cores (compression).
   */
  boolean serialWrites();

  /**
   * Writes the non-zero runs of a chunk read at {@code guestOffset}: {@code runs[2i]} to {@code
   * runs[2i + 1]} (byte positions in {@code chunk}) for {@code i < count}; a target with a backing
   * file also writes the gaps between them as zeros. {@code chunk}'s position and limit (the
   * chunk's bytes) are left alone.
   *
   * @throws IOException if a write fails
   */
  void writeData(ByteBuffer chunk, long guestOffset, int[] runs, int count) throws IOException;

  /**
   * Makes {@code [guestOffset, guestOffset + bytes)} read as zeros (only called on a target with a
   * backing file).
   *
   * @throws IOException if a write fails
   */
  void writeZeroes(long guestOffset, long bytes) throws IOException;
}
