package org.jqcowfs.qcow2.write;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.locks.ReentrantLock;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.L2Table;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Storage;

/** QEMU's {@code preallocate_co}: host clusters for every guest cluster, table by table. */
final class Preallocation {
  private final Storage file;
  private final Storage.Allocation allocation;
  private final Geometry g;
  private final long cs;
  private final ClusterMapper mapper;
  private final Refcounts refcounts;
  private final OverlapGuard guard;
  private final MetadataCache cache;
  private final ClusterAllocator allocator;
  private final ReentrantLock lock;

  Preallocation(
      Storage file,
      Geometry g,
      ClusterMapper mapper,
      Refcounts refcounts,
      OverlapGuard guard,
      MetadataCache cache,
      ClusterAllocator allocator) {
    this.file = file;
    this.allocation = file.capability(Storage.Allocation.class);
    this.g = g;
    this.cs = g.clusterSize();
    this.mapper = mapper;
    this.refcounts = refcounts;
    this.guard = guard;
    this.cache = cache;
    this.allocator = allocator;
    this.lock = cache.lock();
  }

  /**
   * Gives every unallocated guest cluster a host cluster, table by table: the L2 table, then its
   * clusters in a row (QEMU {@code preallocate_co} for {@code preallocation=metadata}); the file
   * then reaches past the last one. With {@code reserve} their space is reserved ({@code falloc}),
   * with {@code zeroes} also written ({@code full}). Not synced: the caller flushes.
   */
  void run(boolean reserve, boolean zeroes, long size) throws IOException {
    long end = 0;
    lock.lock();
    try {
      guard.checkWritable();
      for (long l1Index = 0; l1Index * g.bytesPerL2Table() < size; l1Index++) {
        long pos = l1Index * g.bytesPerL2Table();
        long l2Offset = allocator.writableTable(l1Index, pos);
        L2Table table = mapper.l2Table(l2Offset, l1Index);
        int n = (int) Math.min(g.l2Entries(), (size - pos + cs - 1) / cs);
        L2Entry[] entries = new L2Entry[n];
        int missing = 0;
        for (int i = 0; i < n; i++) {
          missing += table.entry(i).hostClusterOffset() == 0 ? 1 : 0;
        }
        long host = missing == 0 ? 0 : refcounts.allocate(missing);
        guard.check(host, (long) missing * cs, pos);
        for (int i = 0, k = 0; i < n; i++) {
          L2Entry old = table.entry(i);
          if (old.hostClusterOffset() != 0 || old.isCompressed()) {
            entries[i] = old;
            continue;
          }
          long at = host + k++ * cs;
          entries[i] =
              new L2Entry(
                  at | L2Entry.QCOW_OFLAG_COPIED,
                  g.extendedL2() ? L2Entry.QCOW_L2_BITMAP_ALL_ALLOC : 0);
          end = Math.max(end, at + cs);
        }
        cache.changeTable(l2Offset, table.with(0, entries));
        if (missing > 0 && reserve && allocation != null) {
          allocation.allocate(host, (long) missing * cs);
        }
        for (long at = host; zeroes && at < host + (long) missing * cs; at += 1 << 20) {
          file.write(ByteBuffer.allocate((int) Math.min(1 << 20, host + missing * cs - at)), at);
        }
      }
      if (file.length() < end) {
        file.setLength(end);
      }
    } finally {
      lock.unlock();
    }
  }
}
