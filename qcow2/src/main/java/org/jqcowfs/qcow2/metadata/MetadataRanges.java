package org.jqcowfs.qcow2.metadata;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.util.Map;
import java.util.TreeMap;

/**
 * The host ranges of one image that hold metadata, for the check before every write (QEMU {@code
 * qcow2_check_metadata_overlap} with its default "cached" set: the header, the active L1 table and
 * its L2 tables, the refcount table and blocks, the snapshot table and the snapshots' L1 tables).
 * Not thread-safe: the writer uses it under its metadata lock.
 */
public final class MetadataRanges {
  private record Range(long end, String what) {}

  private final TreeMap<Long, Range> ranges = new TreeMap<>();
  private long longest;

  /** Records {@code [hostOffset, hostOffset + bytes)} as holding {@code what}. */
  public void add(long hostOffset, long bytes, String what) {
    if (bytes <= 0) {
      return;
    }
    ranges.merge(
        hostOffset, new Range(hostOffset + bytes, what), (a, b) -> a.end() >= b.end() ? a : b);
    longest = Math.max(longest, bytes);
  }

  /** Forgets the range that starts at {@code hostOffset}, if any. */
  public void remove(long hostOffset) {
    ranges.remove(hostOffset);
  }

  /**
   * What metadata {@code [hostOffset, hostOffset + bytes)} overlaps, as "the L1 table at 0x30000",
   * or null if none.
   */
  public String overlap(long hostOffset, long bytes) {
    long end = hostOffset + bytes;
    for (Map.Entry<Long, Range> e :
        ranges.subMap(Math.max(0, hostOffset - longest), true, end, false).entrySet()) {
      if (e.getValue().end() > hostOffset) {
        return e.getValue().what() + " at " + hex(e.getKey());
      }
    }
    return null;
  }
}
