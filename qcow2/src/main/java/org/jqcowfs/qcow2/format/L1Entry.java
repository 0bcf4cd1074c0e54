package org.jqcowfs.qcow2.format;

/**
 * One L1 table entry (spec section 3, "L1 table entry"): the host offset of an L2 table, the COPIED
 * flag and reserved bits.
 *
 * @param word the entry as stored (big-endian 64 bits, decoded)
 */
public record L1Entry(long word) {

  /** QEMU {@code L1E_OFFSET_MASK}: bits 9-55, the L2 table's host offset. */
  public static final long L1E_OFFSET_MASK = 0x00fffffffffffe00L;

  /** QEMU {@code L1E_RESERVED_MASK}: bits 0-8 and 56-62. */
  public static final long L1E_RESERVED_MASK = 0x7f000000000001ffL;

  /** Bit 63: the L2 table's refcount is exactly one ({@code QCOW_OFLAG_COPIED}). */
  public static final long COPIED = 1L << 63;

  /** An entry pointing at the L2 table at {@code l2Offset}, COPIED or not. */
  public static L1Entry of(long l2Offset, boolean copied) {
    return new L1Entry((l2Offset & L1E_OFFSET_MASK) | (copied ? COPIED : 0));
  }

  /** The host offset in bytes of the L2 table, or 0 when none is allocated. */
  public long l2Offset() {
    return word & L1E_OFFSET_MASK;
  }

  /** Whether any reserved bit is set (the entry is corrupt). */
  public boolean hasReservedBits() {
    return (word & L1E_RESERVED_MASK) != 0;
  }

  /** Whether no L2 table is mapped and no reserved bit is set. */
  public boolean isUnallocated() {
    return (word & (L1E_RESERVED_MASK | L1E_OFFSET_MASK)) == 0;
  }

  /** Whether the COPIED flag is set. */
  public boolean isCopied() {
    return (word & COPIED) != 0;
  }
}
