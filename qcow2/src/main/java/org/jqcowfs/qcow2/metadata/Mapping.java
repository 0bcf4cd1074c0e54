package org.jqcowfs.qcow2.metadata;

import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.SubclusterType;

/**
 * A read mapping: a run of guest bytes with one subcluster type inside one L2 table, or,
 * unallocated, across L1 entries that map no L2 table; for {@link SubclusterType#NORMAL} runs the
 * host bytes are contiguous.
 *
 * @param readKind how a read gets the run's bytes: decided once, by {@link ClusterMapper}
 * @param length bytes, {@code >= 1}
 * @param type never INVALID
 * @param hostOffset host offset of the run's first byte when {@code type.hasHostOffset()}, else -1
 * @param entry the L2 entry of the run's first cluster (null when no L2 table maps it)
 * @param l1Index L1 index of the run
 * @param l2Index L2 index of the run's first cluster
 */
public record Mapping(
    long guestOffset,
    long length,
    SubclusterType type,
    long hostOffset,
    L2Entry entry,
    long l1Index,
    int l2Index,
    ReadKind readKind) {

  /**
   * How a read gets a run's guest bytes. Every read path switches on this, not on the subcluster
   * type, so that a new kind of stored data (encrypted clusters) is learnt in one place.
   */
  public enum ReadKind {
    /** The host bytes as they are, contiguous in the data file: read, or viewed in the cache. */
    HOST,
    /**
     * Host bytes that must be decoded first (compressed clusters): only through the image's {@link
     * ClusterDecoder}, never handed to the kernel as a page-cache view.
     */
    DECODED,
    /** Zeros, hiding the backing file. */
    ZEROS,
    /** Not this layer's: what the backing image reads there, or zeros. */
    BELOW;

    /** The kind of a run of {@code type} ({@link SubclusterType#INVALID} has none). */
    static ReadKind of(SubclusterType type) {
      return switch (type) {
        case NORMAL -> HOST;
        case COMPRESSED -> DECODED;
        case ZERO_PLAIN, ZERO_ALLOC -> ZEROS;
        case UNALLOCATED_PLAIN, UNALLOCATED_ALLOC -> BELOW;
        case INVALID -> throw new IllegalArgumentException("an invalid entry is never mapped");
      };
    }
  }
}
