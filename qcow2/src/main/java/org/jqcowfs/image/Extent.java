package org.jqcowfs.image;

import java.nio.file.Path;
import java.util.Objects;

/**
 * A run of guest bytes {@code [start, start + length)} of one layer with one block status, in the
 * terms of QEMU's {@code BDRV_BLOCK_*} flags.
 *
 * @param start guest offset in bytes
 * @param length length in bytes, {@code > 0}
 * @param allocated this layer decides the content ({@code BDRV_BLOCK_ALLOCATED}: data or zero
 *     here); when false, the content comes from the backing file, or zeros without one
 * @param data the bytes are stored ({@code BDRV_BLOCK_DATA}: normal or compressed clusters)
 * @param zero the bytes read as zeros ({@code BDRV_BLOCK_ZERO})
 * @param compressed the bytes are stored in compressed clusters
 * @param hostOffset offset in bytes in {@code hostFile} where {@code start} is stored raw ({@code
 *     BDRV_BLOCK_OFFSET_VALID}), or -1
 * @param hostFile the file holding {@code hostOffset}, or null when {@code hostOffset} is -1
 */
public record Extent(
    long start,
    long length,
    boolean allocated,
    boolean data,
    boolean zero,
    boolean compressed,
    long hostOffset,
    Path hostFile) {

  public Extent {
    if (length <= 0) {
      throw new IllegalArgumentException("extent length must be > 0: " + length);
    }
    if ((hostOffset < 0) != (hostFile == null)) {
      throw new IllegalArgumentException("hostOffset and hostFile go together");
    }
  }

  /** A range this layer does not allocate, with no host offset. */
  public static Extent unallocated(long start, long length) {
    return new Extent(start, length, false, false, false, false, -1, null);
  }

  /** The guest offset one past the last byte of this extent. */
  public long end() {
    return start + length;
  }

  /** Whether a host offset is known ({@code BDRV_BLOCK_OFFSET_VALID}). */
  public boolean hasHostOffset() {
    return hostOffset >= 0;
  }

  /** The same status cut to {@code newLength} bytes from {@code start}. */
  public Extent withLength(long newLength) {
    return new Extent(start, newLength, allocated, data, zero, compressed, hostOffset, hostFile);
  }

  /** The same status extended by {@code bytes} bytes. */
  public Extent extendBy(long bytes) {
    return withLength(length + bytes);
  }

  /**
   * Whether {@code next}, which starts at {@link #end()}, continues this extent: same flags, same
   * file, and contiguous host offsets when they are known (qemu-img's {@code entry_mergeable}).
   */
  public boolean mergeableWith(Extent next) {
    return next.start == end()
        && allocated == next.allocated
        && data == next.data
        && zero == next.zero
        && compressed == next.compressed
        && hasHostOffset() == next.hasHostOffset()
        && Objects.equals(hostFile, next.hostFile)
        && (!hasHostOffset() || hostOffset + length == next.hostOffset);
  }
}
