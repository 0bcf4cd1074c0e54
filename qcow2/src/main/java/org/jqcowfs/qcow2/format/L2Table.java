package org.jqcowfs.qcow2.format;

import java.nio.ByteBuffer;

/**
 * One L2 table (spec section 3): a cluster of L2 entries, 8 bytes each, or 16 with extended L2
 * entries (the entry, then its subcluster bitmap). Immutable: a change makes a new table ({@link
 * #with}), so that readers never see a half-written entry.
 */
public final class L2Table {
  private final long[] words;
  private final boolean extended;

  private L2Table(long[] words, boolean extended) {
    this.words = words;
    this.extended = extended;
  }

  /**
   * Decodes the table in {@code b}'s remaining bytes, which must be one cluster of {@code g}.
   *
   * @throws IllegalArgumentException if {@code b} does not hold exactly one cluster
   */
  public static L2Table decode(ByteBuffer b, Geometry g) {
    if (b.remaining() != g.clusterSize()) {
      throw new IllegalArgumentException(
          "an L2 table is " + g.clusterSize() + " bytes, given " + b.remaining());
    }
    long[] words = new long[(int) g.clusterSize() / 8];
    b.asLongBuffer().get(words);
    return new L2Table(words, g.extendedL2());
  }

  /** A table of {@code g}'s size whose entries are all unallocated (zero). */
  public static L2Table empty(Geometry g) {
    return new L2Table(new long[(int) g.clusterSize() / 8], g.extendedL2());
  }

  /**
   * A copy of this table with {@code entries[k]} at index {@code first + k}.
   *
   * @throws IndexOutOfBoundsException if the entries run past the end of the table
   */
  public L2Table with(int first, L2Entry... entries) {
    long[] copy = words.clone();
    for (int k = 0; k < entries.length; k++) {
      int i = first + k;
      if (extended) {
        copy[2 * i] = entries[k].word();
        copy[2 * i + 1] = entries[k].bitmap();
      } else {
        copy[i] = entries[k].word();
      }
    }
    return new L2Table(copy, extended);
  }

  /** Entries in the table. */
  public int entries() {
    return extended ? words.length / 2 : words.length;
  }

  /** Entry {@code index}, {@code 0 <= index < entries()}. */
  public L2Entry entry(int index) {
    return extended
        ? new L2Entry(words[2 * index], words[2 * index + 1])
        : new L2Entry(words[index], 0);
  }

  /** The table as stored: one cluster, big-endian. */
  public ByteBuffer encode() {
    ByteBuffer b = ByteBuffer.allocate(words.length * 8);
    b.asLongBuffer().put(words);
    return b;
  }
}
