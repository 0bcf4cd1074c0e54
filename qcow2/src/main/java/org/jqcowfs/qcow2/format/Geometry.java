package org.jqcowfs.qcow2.format;

/**
 * The address arithmetic of one qcow2 image, computed once from its header (spec section 3).
 *
 * @param clusterBits log2 of the cluster size in bytes, 9..21
 * @param extendedL2 whether L2 entries are 128 bits with 32 subclusters (incompatible bit 4)
 */
public record Geometry(int clusterBits, boolean extendedL2) {

  /** Subclusters per cluster with extended L2 entries. */
  public static final int SUBCLUSTERS_PER_CLUSTER = 32;

  /** Cluster size in bytes. */
  public long clusterSize() {
    return 1L << clusterBits;
  }

  /** Bytes of one L2 entry: 8, or 16 with extended L2 entries. */
  public int l2EntryBytes() {
    return extendedL2 ? 16 : 8;
  }

  /** log2 of the number of entries in one L2 table (one cluster). */
  public int l2Bits() {
    return clusterBits - (extendedL2 ? 4 : 3);
  }

  /** Entries in one L2 table. */
  public int l2Entries() {
    return 1 << l2Bits();
  }

  /** Guest bytes mapped by one L2 table. */
  public long bytesPerL2Table() {
    return 1L << (clusterBits + l2Bits());
  }

  /** Subclusters per cluster: 32 with extended L2 entries, else 1. */
  public int subclustersPerCluster() {
    return extendedL2 ? SUBCLUSTERS_PER_CLUSTER : 1;
  }

  /** log2 of the subcluster size in bytes (the cluster size without extended L2 entries). */
  public int subclusterBits() {
    return extendedL2 ? clusterBits - 5 : clusterBits;
  }

  /** L1 index of a guest offset. */
  public long l1Index(long guestOffset) {
    return guestOffset >>> (clusterBits + l2Bits());
  }

  /** Index inside its L2 table of the cluster holding a guest offset. */
  public int l2Index(long guestOffset) {
    return (int) ((guestOffset >>> clusterBits) & (l2Entries() - 1));
  }

  /** Byte offset inside its cluster. */
  public long offsetInCluster(long offset) {
    return offset & (clusterSize() - 1);
  }

  /** Index of the subcluster holding a guest offset inside its cluster (0 without subclusters). */
  public int subclusterIndex(long guestOffset) {
    return (int) (offsetInCluster(guestOffset) >>> subclusterBits());
  }

  /** L1 entries needed to map {@code virtualSize} bytes (QEMU {@code size_to_l1}). */
  public long l1EntriesFor(long virtualSize) {
    long perTable = bytesPerL2Table();
    // unsigned, as QEMU's: a size near 2^63 must not wrap to a negative count
    return Long.divideUnsigned(virtualSize + perTable - 1, perTable);
  }
}
