package org.jqcowfs.image;

import org.jqcowfs.storage.Location;

/**
 * A read or block-status call met damaged metadata: an L1 entry, L2 entry or compressed cluster
 * that breaks the format. Only the guest range that the damaged entry maps is affected: {@code
 * [guestOffset, guestOffset + length)}, the whole range of an L1 entry (one L2 table's worth) or
 * one cluster of an L2 entry. Callers that walk the disk (the mount's data count, {@code map},
 * {@code convert --salvage}) skip that range and go on; a READ of it gives EIO.
 */
public final class DamagedRangeException extends ImageFormatException {
  private static final long serialVersionUID = 1L;

  private final long guestOffset;
  private final long length;

  /**
   * @param file the image whose metadata is damaged
   * @param message what is wrong, naming the L1/L2 place and the value
   * @param guestOffset the first guest byte the damaged entry maps
   * @param length bytes the damaged entry maps, {@code >= 1}
   */
  public DamagedRangeException(Location file, String message, long guestOffset, long length) {
    super(file, message);
    this.guestOffset = guestOffset;
    this.length = length;
  }

  /** The first affected guest byte. */
  public long guestOffset() {
    return guestOffset;
  }

  /** Affected bytes, {@code >= 1}. */
  public long length() {
    return length;
  }

  /** The guest offset just past the affected range. */
  public long end() {
    return guestOffset + length;
  }

  /** Whether the affected range holds {@code offset}. */
  public boolean covers(long offset) {
    return offset >= guestOffset && offset < end();
  }

  /** The range as text: {@code [0x..., +0x...)}. */
  public String rangeText() {
    return "[" + hex(guestOffset) + ", +" + hex(length) + ")";
  }
}
