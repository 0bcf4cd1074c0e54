package org.jqcowfs.qcow2.format;

/**
 * What one (sub)cluster holds: QEMU's {@code QCow2SubclusterType} (block/qcow2.h). Without extended
 * L2 entries every cluster is one subcluster.
 */
public enum SubclusterType {
  /** Data stored raw at the host offset. */
  NORMAL,
  /** Data stored compressed; the L2 entry is a compressed cluster descriptor. */
  COMPRESSED,
  /** Reads as zeros, no host cluster. */
  ZERO_PLAIN,
  /** Reads as zeros, host cluster preallocated. */
  ZERO_ALLOC,
  /** Not allocated here: backing file or zeros; no host cluster. */
  UNALLOCATED_PLAIN,
  /** Not allocated here: backing file or zeros; host cluster allocated (extended L2 only). */
  UNALLOCATED_ALLOC,
  /** A contradictory entry (reserved bits, a subcluster both allocated and zero, ...). */
  INVALID;

  /** Whether this layer decides the content (data or zeros) rather than the backing file. */
  public boolean isAllocated() {
    return this == NORMAL || this == COMPRESSED || this == ZERO_PLAIN || this == ZERO_ALLOC;
  }

  /** Whether the L2 entry carries a raw host cluster offset ({@code BDRV_BLOCK_OFFSET_VALID}). */
  public boolean hasHostOffset() {
    return this == NORMAL || this == ZERO_ALLOC || this == UNALLOCATED_ALLOC;
  }
}
