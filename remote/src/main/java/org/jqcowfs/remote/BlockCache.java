package org.jqcowfs.remote;

import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Fetched blocks of one remote object, the least recently used dropped beyond a byte budget.
 * Thread-safe; the lock is held only to look up or insert, never during a fetch.
 */
final class BlockCache {
  /**
   * A block's bytes: {@code bytes} bytes of {@code array} from {@code offset}. The array is the
   * whole run fetched with it, not a copy; the blocks of a run are cached together and so mostly
   * dropped together, which keeps the memory held near the budget.
   */
  record Block(byte[] array, int offset, int bytes) {}

  private final long capacityBytes;
  private long bytes;
  private final LinkedHashMap<Long, Block> blocks = new LinkedHashMap<>(64, 0.75f, true);

  BlockCache(long capacityBytes) {
    this.capacityBytes = capacityBytes;
  }

  /** Block {@code index}, or null when it is not cached. */
  synchronized Block get(long index) {
    return blocks.get(index);
  }

  /** Caches block {@code index}, dropping the least recently used beyond the budget. */
  synchronized void put(long index, Block block) {
    Block old = blocks.put(index, block);
    bytes += block.bytes() - (old == null ? 0 : old.bytes());
    var it = blocks.entrySet().iterator();
    while (bytes > capacityBytes && it.hasNext()) {
      Map.Entry<Long, Block> eldest = it.next();
      if (eldest.getKey() != index) {
        bytes -= eldest.getValue().bytes();
        it.remove();
      }
    }
  }
}
