package org.jqcowfs.image;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import org.jqcowfs.storage.Location;

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
 * @param depth in a backing chain, the layer that decided the status (0 = top); where no layer
 *     allocates the range, the layer where the walk stopped. 0 for a single layer.
 */
public record Extent(
    long start,
    long length,
    boolean allocated,
    boolean data,
    boolean zero,
    boolean compressed,
    long hostOffset,
    Location hostFile,
    int depth) {

  public Extent {
    if (length <= 0) {
      throw new IllegalArgumentException("extent length must be > 0: " + length);
    }
    if ((hostOffset < 0) != (hostFile == null)) {
      throw new IllegalArgumentException("hostOffset and hostFile go together");
    }
  }

  /** The status of one layer (depth 0). */
  public Extent(
      long start,
      long length,
      boolean allocated,
      boolean data,
      boolean zero,
      boolean compressed,
      long hostOffset,
      Location hostFile) {
    this(start, length, allocated, data, zero, compressed, hostOffset, hostFile, 0);
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
    return new Extent(
        start, newLength, allocated, data, zero, compressed, hostOffset, hostFile, depth);
  }

  /** The same status as decided by layer {@code layer} of a chain. */
  public Extent atDepth(int layer) {
    return new Extent(
        start, length, allocated, data, zero, compressed, hostOffset, hostFile, layer);
  }

  /**
   * Whether the range is data for SEEK_DATA/SEEK_HOLE, st_blocks and convert: stored data that does
   * not read as zero. A hole is what reads as zero: unallocated in every layer, a zero cluster or
   * subcluster, or an allocated cluster whose host range is a hole in the image file (QEMU's {@code
   * "data": true, "zero": true}, which a metadata-preallocated image reports). Data that happens to
   * hold zeros stays data: no content is scanned.
   */
  public boolean readsAsData() {
    return data && !zero;
  }

  /** The same status extended by {@code bytes} bytes. */
  public Extent extendBy(long bytes) {
    return withLength(length + bytes);
  }

  /**
   * Whether {@code next}, which starts at {@link #end()}, continues this extent: same flags, same
   * depth, same file, and contiguous host offsets when they are known (qemu-img's {@code
   * entry_mergeable}).
   */
  public boolean mergeableWith(Extent next) {
    return next.start == end()
        && depth == next.depth
        && allocated == next.allocated
        && data == next.data
        && zero == next.zero
        && compressed == next.compressed
        && hasHostOffset() == next.hasHostOffset()
        && Objects.equals(hostFile, next.hostFile)
        && (!hasHostOffset() || hostOffset + length == next.hostOffset);
  }

  /**
   * Merges extents given in guest order into maximal runs: each one that {@link #mergeableWith
   * continues} the run before it extends that run. The one merger of layer and chain maps.
   */
  public static final class Merger {
    private final List<Extent> runs = new ArrayList<>();
    private Extent current;

    /** Adds {@code next}, which starts where the last one added ended, or after a {@link #cut}. */
    public void add(Extent next) {
      if (current != null && current.mergeableWith(next)) {
        current = current.extendBy(next.length());
      } else {
        cut();
        current = next;
      }
    }

    /** Ends the current run: the next extent starts a new one (after a gap in the map). */
    public void cut() {
      if (current != null) {
        runs.add(current);
        current = null;
      }
    }

    /** The runs so far, the current one included. */
    public List<Extent> finish() {
      cut();
      return runs;
    }
  }
}
