package org.jqcowfs.chain;

import java.nio.file.Path;

/**
 * Chain-wide block status of a run of guest bytes: one object of {@code qemu-img map --output=json}
 * (qemu-img.c {@code get_block_status}).
 *
 * @param start guest offset in bytes
 * @param length bytes
 * @param depth the layer that decided the status (0 = top); for ranges no layer allocates, the
 *     layer where the walk stopped
 * @param present some layer allocates the range ({@code BDRV_BLOCK_ALLOCATED})
 * @param zero the range reads as zeros
 * @param data the range holds stored data (normal or compressed clusters, or raw data)
 * @param compressed the range is stored compressed
 * @param offset host offset in bytes in {@code file}, or -1 when not stored raw
 * @param file the file holding {@code offset}, or null
 */
public record ChainExtent(
    long start,
    long length,
    int depth,
    boolean present,
    boolean zero,
    boolean data,
    boolean compressed,
    long offset,
    Path file) {

  /**
   * Whether the range is data for SEEK_DATA/SEEK_HOLE, st_blocks and convert: stored data that does
   * not read as zero. A hole is what the chain reads as zero: unallocated in every layer, a zero
   * cluster or subcluster, or an allocated cluster whose host range is a hole in the image file
   * (QEMU's {@code "data": true, "zero": true}, which a metadata-preallocated image reports). Data
   * that happens to hold zeros stays data: no content is scanned.
   */
  public boolean readsAsData() {
    return data && !zero;
  }

  /** One past the last byte. */
  public long end() {
    return start + length;
  }

  /** Whether {@code next} continues this run (qemu-img's {@code entry_mergeable}). */
  public boolean mergeableWith(ChainExtent next) {
    return next.start == end()
        && depth == next.depth
        && present == next.present
        && zero == next.zero
        && data == next.data
        && compressed == next.compressed
        && (offset >= 0) == (next.offset >= 0)
        && (offset < 0 || (offset + length == next.offset && file.equals(next.file)));
  }

  /** This run extended by {@code bytes}. */
  public ChainExtent extendBy(long bytes) {
    return new ChainExtent(
        start, length + bytes, depth, present, zero, data, compressed, offset, file);
  }
}
