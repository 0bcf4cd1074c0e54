package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.util.concurrent.locks.ReentrantLock;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.L2Table;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/**
 * Host bytes for compressed clusters (QEMU {@code qcow2_alloc_compressed_cluster_offset}): streams
 * packed after one another, each guest cluster claimed through {@link ClusterAllocator} until its
 * L2 entry is linked. Under {@link MetadataCache#lock}.
 */
final class CompressedClusters {
  private final Location path;
  private final Storage file;
  private final Geometry g;
  private final long cs;
  private final ClusterMapper mapper;
  private final Refcounts refcounts;
  private final OverlapGuard guard;
  private final MetadataCache cache;
  private final ClusterAllocator allocator;
  private final ReentrantLock lock;

  CompressedClusters(
      Storage file,
      Geometry g,
      ClusterMapper mapper,
      Refcounts refcounts,
      OverlapGuard guard,
      MetadataCache cache,
      ClusterAllocator allocator) {
    this.path = file.location();
    this.file = file;
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
   * Where a compressed cluster's stream of {@code bytes} goes: {@code hostOffset}, for the guest
   * cluster at {@code l2Index} of L2 table {@code l1Index}, claimed until {@link #finish}.
   */
  record CompressedStep(
      ClusterAllocator.Claim claim, long l1Index, int l2Index, long hostOffset, int bytes) {}

  /**
   * Allocates {@code bytes} for the compressed stream of the guest cluster at {@code guestOffset}
   * ({@code qcow2_alloc_compressed_cluster_offset}): packed after the previous stream ({@link
   * Refcounts#allocateBytes}); the file grows to cover it here, under the lock.
   *
   * @throws IOException (QEMU's EIO) if the cluster is allocated already: a compressed write cannot
   *     overwrite anything; or as {@link Refcounts#allocate}
   */
  CompressedStep prepare(long guestOffset, int bytes) throws IOException {
    lock.lock();
    try {
      long start = guestOffset - g.offsetInCluster(guestOffset);
      allocator.awaitNoClaim(start, start + cs);
      long l1Index = g.l1Index(start);
      long l2Offset = allocator.writableTable(l1Index, start);
      int i = g.l2Index(start);
      L2Entry old = mapper.l2Table(l2Offset, l1Index).entry(i);
      if (old.hostClusterOffset() != 0 || old.isCompressed()) {
        throw new IOException(
            path
                + ": compressed write to guest offset "
                + hex(start)
                + ": the cluster is allocated");
      }
      long host = refcounts.allocateBytes(bytes);
      guard.check(host, bytes, start);
      long end = (host + bytes + 511) & -512L; // QEMU reads whole sectors of a compressed stream
      if (file.length() < end) {
        file.setLength(end);
      }
      ClusterAllocator.Claim claim = new ClusterAllocator.Claim(start, start + cs, true);
      allocator.claim(claim);
      return new CompressedStep(claim, l1Index, i, host, bytes);
    } finally {
      lock.unlock();
    }
  }

  /**
   * Links a written compressed stream into its L2 table; after a failed write the bytes stay
   * allocated (a leak: the cluster they share may hold other streams).
   */
  void finish(CompressedStep step, boolean written) throws IOException {
    lock.lock();
    try {
      if (written) {
        long l2Offset = mapper.l1Entry(step.l1Index()).l2Offset();
        L2Table table = mapper.l2Table(l2Offset, step.l1Index());
        L2Entry e = L2Entry.compressed(step.hostOffset(), step.bytes(), g.clusterBits());
        cache.changeTable(l2Offset, table.with(step.l2Index(), new L2Entry[] {e}));
      }
    } finally {
      allocator.release(step.claim());
      lock.unlock();
    }
  }
}
