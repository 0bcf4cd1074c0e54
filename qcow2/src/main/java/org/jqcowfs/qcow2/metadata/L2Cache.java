package org.jqcowfs.qcow2.metadata;

import java.io.IOException;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.LongAdder;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.L2Table;

/**
 * A concurrent cache of immutable L2 tables keyed by host offset, bounded in bytes, least recently
 * used first out. Each table is loaded once under concurrent misses (later callers wait for the
 * first one's load); a failed load is not cached. The lock guards only the bookkeeping, never the
 * load's I/O. Sizing follows QEMU's {@code DEFAULT_L2_CACHE_MAX_SIZE} (block/qcow2.h).
 */
public final class L2Cache {
  /** QEMU's default cap on Linux: 32 MiB. */
  public static final long DEFAULT_MAX_BYTES = 32L << 20;

  /** Loads the table at a host offset. */
  @FunctionalInterface
  public interface Loader {
    L2Table load(long hostOffset) throws IOException;
  }

  /**
   * @param hits lookups answered from the cache
   * @param misses lookups that loaded the table
   * @param tables tables cached now
   * @param capacityTables the most tables kept
   */
  public record Stats(long hits, long misses, int tables, int capacityTables) {}

  /** A walk over the whole disk whose body this thread runs now ({@link #scan}). */
  private static final ThreadLocal<Boolean> SCANNING = ThreadLocal.withInitial(() -> false);

  /** The body of a {@link #scan}. */
  @FunctionalInterface
  public interface ScanBody<T> {
    T run() throws IOException;
  }

  private final int capacity;
  private final Map<Long, CompletableFuture<L2Table>> tables;

  /** Tables changed in memory and not yet written ({@link #pin}): never evicted, read first. */
  private final Map<Long, L2Table> pinned = new ConcurrentHashMap<>();

  private volatile boolean anyPinned;

  /** The table last returned, answered without the lock (a sequential reader stays in one). */
  private record Recent(long hostOffset, L2Table table) {}

  private volatile Recent recent;
  private final LongAdder hits = new LongAdder();
  private final LongAdder misses = new LongAdder();

  /**
   * @param capacityBytes the most bytes of L2 tables to keep (at least one table is kept)
   * @param tableBytes bytes of one L2 table (the cluster size)
   */
  public L2Cache(long capacityBytes, long tableBytes) {
    this.capacity = (int) Math.max(1, Math.min(Integer.MAX_VALUE, capacityBytes / tableBytes));
    this.tables =
        new LinkedHashMap<>(16, 0.75f, true) {
          private static final long serialVersionUID = 1L;

          @Override
          protected boolean removeEldestEntry(Map.Entry<Long, CompletableFuture<L2Table>> e) {
            return size() > capacity;
          }
        };
  }

  /**
   * The default capacity in bytes: enough L2 tables to map {@code virtualSize} bytes, up to {@link
   * #DEFAULT_MAX_BYTES} (QEMU {@code read_cache_sizes}).
   */
  public static long defaultBytes(Geometry g, long virtualSize) {
    long tablesNeeded = Math.max(1, g.l1EntriesFor(virtualSize));
    return Math.min(DEFAULT_MAX_BYTES, tablesNeeded * g.clusterSize());
  }

  /**
   * Runs {@code body} on this thread as a scan over the whole disk (the mount's background data
   * count): the tables it misses are loaded for it alone and not cached, so that a scan neither
   * evicts the tables that READs use nor keeps tables it will not ask for again (a 4 TiB
   * preallocated image has 655 MB of them: cached one by one, the evicted ones outlived the young
   * generation and raised the daemon's peak RSS to 454 MiB).
   *
   * @throws IOException what {@code body} throws
   */
  public static <T> T scan(ScanBody<T> body) throws IOException {
    boolean outer = SCANNING.get();
    SCANNING.set(true);
    try {
      return body.run();
    } finally {
      SCANNING.set(outer);
    }
  }

  /**
   * The table at {@code hostOffset}, loaded with {@code loader} on a miss (and during a {@link
   * #scan}, not cached).
   *
   * @throws IOException the loader's exception, for the caller that loaded and those that waited
   */
  public L2Table get(long hostOffset, Loader loader) throws IOException {
    Recent r = recent;
    if (r != null && r.hostOffset() == hostOffset) {
      hits.increment();
      return r.table();
    }
    if (anyPinned) {
      L2Table p = pinned.get(hostOffset);
      if (p != null) {
        hits.increment();
        return p;
      }
    }
    CompletableFuture<L2Table> future;
    boolean mine = false;
    boolean uncached = false;
    synchronized (tables) {
      future = tables.get(hostOffset);
      if (future == null && SCANNING.get()) {
        uncached = true; // loaded below for this scan alone
      } else if (future == null) {
        future = new CompletableFuture<>();
        tables.put(hostOffset, future);
        mine = true;
      }
    }
    if (uncached) {
      misses.increment();
      return loader.load(hostOffset);
    }
    if (mine) {
      misses.increment();
      try {
        L2Table table = loader.load(hostOffset);
        future.complete(table);
        remember(hostOffset, future, table);
        return table;
      } catch (IOException | RuntimeException e) {
        synchronized (tables) {
          tables.remove(hostOffset, future);
        }
        future.completeExceptionally(e);
        throw e;
      }
    }
    hits.increment();
    try {
      L2Table table = future.get();
      remember(hostOffset, future, table);
      return table;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new java.io.InterruptedIOException("interrupted while waiting for an L2 table");
    } catch (ExecutionException e) {
      if (e.getCause() instanceof IOException io) {
        throw new IOException(io.getMessage(), io);
      }
      throw new IOException(e.getCause());
    }
  }

  /**
   * Makes {@code table} the {@link #recent} one, unless a writer pinned another version or replaced
   * the entry meanwhile (so that a stale table never becomes the recent one).
   */
  private void remember(long hostOffset, CompletableFuture<L2Table> from, L2Table table) {
    synchronized (tables) {
      if (!pinned.containsKey(hostOffset) && tables.get(hostOffset) == from) {
        recent = new Recent(hostOffset, table);
      }
    }
  }

  /**
   * Makes {@code table} the version of the table at {@code hostOffset} that every later {@link
   * #get} returns, kept until {@link #unpin} (a writer's changed table, not yet on disk).
   */
  public void pin(long hostOffset, L2Table table) {
    synchronized (tables) {
      pinned.put(hostOffset, table);
      anyPinned = true;
      recent = null;
    }
  }

  /**
   * Ends the pin of the table at {@code hostOffset}, once it is written: it stays cached as an
   * ordinary entry. No-op if not pinned.
   */
  public void unpin(long hostOffset) {
    synchronized (tables) {
      L2Table table = pinned.remove(hostOffset);
      if (table != null) {
        tables.put(hostOffset, CompletableFuture.completedFuture(table));
      }
      anyPinned = !pinned.isEmpty();
      recent = null;
    }
  }

  /** Counters and occupancy. */
  public Stats stats() {
    int n;
    synchronized (tables) {
      n = tables.size();
    }
    return new Stats(hits.sum(), misses.sum(), n, capacity);
  }
}
