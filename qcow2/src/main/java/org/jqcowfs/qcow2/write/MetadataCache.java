package org.jqcowfs.qcow2.write;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.locks.ReentrantLock;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L2Table;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.L2Cache;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Storage;

/**
 * The metadata a writer has changed and not yet written (QEMU {@code qcow2-cache.c}): L2 tables
 * (pinned in the {@link L2Cache}, so that readers see them at once), the L1 table, and through
 * {@link Refcounts} the refcount blocks; and the one order they are written in ({@link #flush}).
 * Owns the writer's lock (QEMU's {@code s->lock}): metadata changes only under it.
 */
final class MetadataCache {
  private final Storage file;
  private final Header header;
  private final long cs;
  private final ClusterMapper mapper;
  private final L2Cache l2Cache;
  private final Refcounts refcounts;
  private final OverlapGuard guard;
  private final ReentrantLock lock = new ReentrantLock();
  private final Map<Long, L2Table> dirtyTables = new LinkedHashMap<>();
  private boolean l1Dirty;
  private long l1TableOffset; // under the lock; moved only by a growing resize

  MetadataCache(
      Storage file,
      Header header,
      ClusterMapper mapper,
      L2Cache l2Cache,
      Refcounts refcounts,
      OverlapGuard guard) {
    this.file = file;
    this.header = header;
    this.cs = header.geometry().clusterSize();
    this.mapper = mapper;
    this.l2Cache = l2Cache;
    this.refcounts = refcounts;
    this.guard = guard;
    this.l1TableOffset = header.l1TableOffset();
  }

  /**
   * The active L1 table now lives at {@code offset} with {@code entries} (a grown table, written,
   * synced and named by the header already): later flushes write it there. Under the lock.
   */
  void movedL1Table(long offset, long[] entries) {
    l1TableOffset = offset;
    mapper.setL1Table(entries);
  }

  /** A copy of the active L1 table's entries. Under the lock. */
  long[] l1Copy() {
    return mapper.l1Table().clone();
  }

  /** Where the active L1 table is. Under the lock. */
  long l1TableOffset() {
    return l1TableOffset;
  }

  /** The writer's lock: held while metadata is looked up for a change and changed. */
  ReentrantLock lock() {
    return lock;
  }

  /**
   * Allocates {@code clusters} consecutive host clusters under the lock ({@link
   * Refcounts#allocate}), for a caller that does not hold it; their refcounts are durable after the
   * next {@link #flush}.
   *
   * @return the host offset in bytes of the first
   * @throws IOException as {@link Refcounts#allocate}
   */
  long allocate(int clusters) throws IOException {
    lock.lock();
    try {
      return refcounts.allocate(clusters);
    } finally {
      lock.unlock();
    }
  }

  /** {@code table} is now the L2 table at {@code l2Offset}: dirty until {@link #flush}. */
  void changeTable(long l2Offset, L2Table table) {
    dirtyTables.put(l2Offset, table);
    l2Cache.pin(l2Offset, table);
  }

  /** {@code entries} is now the active L1 table: dirty until {@link #flush}. Under the lock. */
  void setL1Table(long[] entries) {
    mapper.setL1Table(entries);
    l1Dirty = true;
  }

  /**
   * Makes every write completed before the call durable: changed refcount blocks are written and
   * the file synced (new clusters' refcounts and their copied data on disk), then the refcount
   * table entries of new refcount blocks (synced), then the changed L2 tables (synced), then the L1
   * table (synced), then the refcounts that drop (synced). QEMU {@code qcow2_co_flush_to_os} with
   * its cache dependencies, then {@code bdrv_flush}.
   */
  void flush() throws IOException {
    boolean dataOnly = false;
    lock.lock();
    try {
      if (!refcounts.hasDirty() && dirtyTables.isEmpty() && !l1Dirty && !refcounts.hasFrees()) {
        dataOnly = true; // no metadata to order: the sync runs without the lock
      } else {
        writeMetadata();
      }
    } finally {
      lock.unlock();
    }
    if (dataOnly) {
      file.flush();
    }
  }

  /** The ordered part of {@link #flush}, under the lock. */
  private void writeMetadata() throws IOException {
    refcounts.writeDirty();
    file.flush();
    if (refcounts.writeNewTableEntries()) {
      file.flush();
    }
    if (!dirtyTables.isEmpty()) {
      for (Map.Entry<Long, L2Table> e : dirtyTables.entrySet()) {
        guard.checkNotOnOtherMetadata(e.getKey(), cs, "an L2 table");
        file.write(e.getValue().encode(), e.getKey());
      }
      file.flush();
      for (Long offset : dirtyTables.keySet()) {
        l2Cache.unpin(offset);
      }
      dirtyTables.clear();
    }
    if (l1Dirty) {
      long[] l1 = mapper.l1Table();
      ByteBuffer b = ByteBuffer.allocate(l1.length * 8);
      b.asLongBuffer().put(l1);
      file.write(b, l1TableOffset);
      file.flush();
      l1Dirty = false;
    }
    if (refcounts.hasFrees()) {
      refcounts.applyFrees();
      refcounts.writeDirty();
      file.flush();
    }
  }
}
