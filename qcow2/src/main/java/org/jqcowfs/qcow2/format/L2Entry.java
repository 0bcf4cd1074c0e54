package org.jqcowfs.qcow2.format;

/**
 * One L2 table entry (spec section 3.2/3.3): the 64-bit cluster descriptor word and, with extended
 * L2 entries, the 64-bit subcluster bitmap.
 *
 * <pre>
 * word  bit 63     COPIED (refcount exactly 1)
 *       bit 62     compressed cluster descriptor follows in bits 0..61
 *       bits 56-61 reserved (standard)
 *       bits 9-55  host cluster offset (standard)
 *       bits 1-8   reserved (standard)
 *       bit 0      ZERO flag (standard, v3 without extended L2)
 * bitmap bits 0-31  subcluster i allocated
 *        bits 32-63 subcluster i reads as zeros
 * </pre>
 *
 * @param word the descriptor word as stored (big-endian decoded)
 * @param bitmap the subcluster bitmap, 0 without extended L2 entries
 */
public record L2Entry(long word, long bitmap) {
  /** {@code QCOW_OFLAG_COPIED}. */
  public static final long QCOW_OFLAG_COPIED = 1L << 63;

  /** {@code QCOW_OFLAG_COMPRESSED}. */
  public static final long QCOW_OFLAG_COMPRESSED = 1L << 62;

  /** {@code QCOW_OFLAG_ZERO}. */
  public static final long QCOW_OFLAG_ZERO = 1L;

  /** {@code L2E_OFFSET_MASK}: bits 9-55. */
  public static final long L2E_OFFSET_MASK = 0x00fffffffffffe00L;

  /** {@code L2E_STD_RESERVED_MASK}: bits 1-8 and 56-61. */
  public static final long L2E_STD_RESERVED_MASK = 0x3f000000000001feL;

  /** {@code QCOW_L2_BITMAP_ALL_ZEROES}: bits 32-63 of the subcluster bitmap. */
  public static final long QCOW_L2_BITMAP_ALL_ZEROES = 0xffffffff00000000L;

  /** {@code QCOW_L2_BITMAP_ALL_ALLOC}: bits 0-31 of the subcluster bitmap. */
  public static final long QCOW_L2_BITMAP_ALL_ALLOC = 0xffffffffL;

  /** Host cluster offset of a standard descriptor (bits 9-55). */
  public long hostClusterOffset() {
    return word & L2E_OFFSET_MASK;
  }

  /** Whether bit 62 marks a compressed cluster descriptor. */
  public boolean isCompressed() {
    return (word & QCOW_OFLAG_COMPRESSED) != 0;
  }

  /**
   * The type of subcluster {@code subclusterIndex} (0 without extended L2 entries), as QEMU's
   * {@code qcow2_get_subcluster_type} after {@code qcow2_get_cluster_type}, and stricter: reserved
   * bits set, a ZERO flag in a v2 image, high offset bits of a compressed descriptor, or a non-zero
   * bitmap of a compressed cluster make the entry {@link SubclusterType#INVALID}.
   *
   * @param g the image geometry
   * @param subclusterIndex 0..31 with extended L2 entries, else 0
   * @param zeroFlagAllowed false for v2 images, where bit 0 must be clear
   * @param externalDataFile whether the image has an external data file (offset 0 with COPIED set
   *     is then a normal cluster)
   */
  public SubclusterType type(
      Geometry g, int subclusterIndex, boolean zeroFlagAllowed, boolean externalDataFile) {
    if (isCompressed()) {
      int csizeShift = 62 - (g.clusterBits() - 8);
      long coffset = word & ((1L << csizeShift) - 1);
      boolean badOffset = (coffset & ~L2E_OFFSET_MASK & ~0x1ffL) != 0;
      return badOffset || bitmap != 0 || externalDataFile
          ? SubclusterType.INVALID
          : SubclusterType.COMPRESSED;
    }
    long reserved = L2E_STD_RESERVED_MASK | (g.extendedL2() || !zeroFlagAllowed ? 1 : 0);
    if ((word & reserved) != 0) {
      return SubclusterType.INVALID;
    }
    boolean hasOffset =
        hostClusterOffset() != 0 || (externalDataFile && (word & QCOW_OFLAG_COPIED) != 0);
    if (!g.extendedL2()) {
      if ((word & QCOW_OFLAG_ZERO) != 0) {
        return hostClusterOffset() != 0 ? SubclusterType.ZERO_ALLOC : SubclusterType.ZERO_PLAIN;
      }
      return hasOffset ? SubclusterType.NORMAL : SubclusterType.UNALLOCATED_PLAIN;
    }
    long zeroBit = 1L << (32 + subclusterIndex);
    long allocBit = 1L << subclusterIndex;
    if (hasOffset) {
      if (((bitmap >>> 32) & bitmap) != 0) {
        return SubclusterType.INVALID;
      }
      if ((bitmap & zeroBit) != 0) {
        return SubclusterType.ZERO_ALLOC;
      }
      return (bitmap & allocBit) != 0 ? SubclusterType.NORMAL : SubclusterType.UNALLOCATED_ALLOC;
    }
    if ((bitmap & QCOW_L2_BITMAP_ALL_ALLOC) != 0) {
      return SubclusterType.INVALID;
    }
    return (bitmap & zeroBit) != 0 ? SubclusterType.ZERO_PLAIN : SubclusterType.UNALLOCATED_PLAIN;
  }

  /**
   * How many subclusters from {@code from} on have the type of subcluster {@code from} (QEMU {@code
   * qcow2_get_subcluster_range_type}); the whole rest of the cluster without subclusters or for a
   * compressed cluster.
   */
  public int sameTypeRun(Geometry g, int from, SubclusterType type) {
    int per = g.subclustersPerCluster();
    if (!g.extendedL2() || type == SubclusterType.COMPRESSED || type == SubclusterType.INVALID) {
      return per - from;
    }
    long mask = from == 0 ? 0 : (1L << from) - 1; // subclusters before 'from' count as "same"
    int ones =
        switch (type) {
          case NORMAL -> Integer.numberOfTrailingZeros(~(int) (bitmap | mask));
          case ZERO_PLAIN, ZERO_ALLOC ->
              Integer.numberOfTrailingZeros(~(int) ((bitmap >>> 32) | mask));
          case UNALLOCATED_PLAIN, UNALLOCATED_ALLOC ->
              Integer.numberOfTrailingZeros((int) (((bitmap >>> 32) | bitmap) & ~mask));
          default -> throw new IllegalStateException(type.name());
        };
    // numberOfTrailingZeros of 0 is 32: the run reaches the end of the cluster.
    return Math.min(ones, per) - from;
  }

  /**
   * The compressed cluster descriptor (spec 3.2) for an image with {@code clusterBits}: host byte
   * offset of the compressed data and the upper bound of its length in bytes (QEMU {@code
   * qcow2_parse_compressed_l2_entry}).
   */
  public CompressedDescriptor compressedDescriptor(int clusterBits) {
    int csizeShift = 62 - (clusterBits - 8);
    long csizeMask = (1L << (clusterBits - 8)) - 1;
    long coffset = word & ((1L << csizeShift) - 1);
    long sectors = ((word >>> csizeShift) & csizeMask) + 1;
    return new CompressedDescriptor(coffset, sectors * 512 - (coffset & 511));
  }

  /**
   * The L2 entry of a compressed cluster whose {@code bytes} bytes of stream start at host byte
   * {@code hostOffset} (spec 3.2; QEMU {@code qcow2_alloc_compressed_cluster_offset}): the
   * compressed flag, the offset, and the 512-byte sectors the stream reaches into after the first.
   * No COPIED flag, and (extended L2) an all-zero bitmap.
   */
  public static L2Entry compressed(long hostOffset, int bytes, int clusterBits) {
    int csizeShift = 62 - (clusterBits - 8);
    long sectors = ((hostOffset + bytes - 1) >>> 9) - (hostOffset >>> 9);
    return new L2Entry(QCOW_OFLAG_COMPRESSED | hostOffset | (sectors << csizeShift), 0);
  }

  /**
   * @param hostOffset host byte offset of the compressed stream (not aligned)
   * @param maxLength upper bound in bytes of the stored stream; the file may end before it
   */
  public record CompressedDescriptor(long hostOffset, long maxLength) {}
}
