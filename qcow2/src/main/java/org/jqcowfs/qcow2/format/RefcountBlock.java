package org.jqcowfs.qcow2.format;

import java.nio.ByteBuffer;

/**
 * The entries of a refcount block (spec section 4): {@code 2^refcount_order}-bit big-endian
 * refcounts, packed from bit 0 of byte 0 for widths below 8 (QEMU's {@code get_refcount_ro0} ..
 * {@code get_refcount_ro6} and their setters).
 */
public final class RefcountBlock {
  private RefcountBlock() {}

  /** Refcount {@code index} of a block of {@code bits}-bit refcounts. */
  public static long get(ByteBuffer block, int bits, long index) {
    return switch (bits) {
      case 64 -> block.getLong((int) (index * 8));
      case 32 -> Integer.toUnsignedLong(block.getInt((int) (index * 4)));
      case 16 -> block.getShort((int) (index * 2)) & 0xffffL;
      case 8 -> block.get((int) index) & 0xffL;
      default -> {
        long bitIndex = index * bits;
        yield (block.get((int) (bitIndex / 8)) >>> (bitIndex % 8)) & ((1L << bits) - 1);
      }
    };
  }

  /** Sets refcount {@code index} of a block of {@code bits}-bit refcounts. */
  public static void put(ByteBuffer block, int bits, long index, long value) {
    switch (bits) {
      case 64 -> block.putLong((int) (index * 8), value);
      case 32 -> block.putInt((int) (index * 4), (int) value);
      case 16 -> block.putShort((int) (index * 2), (short) value);
      case 8 -> block.put((int) index, (byte) value);
      default -> {
        long bitIndex = index * bits;
        int at = (int) (bitIndex / 8);
        int shift = (int) (bitIndex % 8);
        int mask = ((1 << bits) - 1) << shift;
        block.put(at, (byte) ((block.get(at) & ~mask) | (((int) value << shift) & mask)));
      }
    }
  }
}
