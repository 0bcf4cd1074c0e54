package org.jqcowfs.remote;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Fetched blocks of one remote object, the least recently used dropped beyond a byte budget.
 * Thread-safe; the lock is held only to look up or insert, never during a fetch.
 */
final class BlockCache {
  private final long capacityBytes;
  private long bytes;
  private final LinkedHashMap<Long, byte[]> blocks = new LinkedHashMap<>(64, 0.75f, true);

  BlockCache(long capacityBytes) {
    this.capacityBytes = capacityBytes;
  }

  /** Block {@code index}, or null when it is not cached. */
  synchronized byte[] get(long index) {
    return blocks.get(index);
  }

  /** Caches block {@code index}, dropping the least recently used beyond the budget. */
  synchronized void put(long index, byte[] data) {
    byte[] old = blocks.put(index, data);
    bytes += data.length - (old == null ? 0 : old.length);
    var it = blocks.entrySet().iterator();
    while (bytes > capacityBytes && it.hasNext()) {
      Map.Entry<Long, byte[]> eldest = it.next();
      if (eldest.getKey() != index) {
        bytes -= eldest.getValue().length;
        it.remove();
      }
    }
  }
}
