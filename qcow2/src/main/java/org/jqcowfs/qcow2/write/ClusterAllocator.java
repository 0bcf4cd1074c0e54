package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.L2Table;
import org.jqcowfs.qcow2.format.SubclusterType;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/**
 * Host clusters for guest writes (QEMU {@code qcow2-cluster.c}: {@code qcow2_alloc_host_offset},
 * {@code handle_copied}, {@code handle_alloc}, {@code qcow2_alloc_cluster_link_l2}, {@code
 * l2_allocate}, {@code qcow2_free_any_cluster}): a write is mapped to a {@link Step}, in place in a
 * COPIED cluster or into new clusters from {@link Refcounts}, and claims its guest clusters until
 * {@link #finish} links the new ones into their L2 table (a write to a claimed cluster waits:
 * {@code handle_dependencies}). Under {@link MetadataCache#lock}.
 */
final class ClusterAllocator {
  private final Location path;
  private final Storage file;
  private final Storage.Allocation allocation;
  private final Geometry g;
  private final long cs;
  private final boolean v3;
  private final ClusterMapper mapper;
  private final Refcounts refcounts;
  private final OverlapGuard guard;
  private final MetadataCache cache;
  private final ReentrantLock lock;
  private final Condition released;
  private final List<Claim> claims = new ArrayList<>();

  /**
   * Guest clusters {@code [start, end)} (byte offsets) that a write in flight uses: an allocation
   * ({@code exclusive}) or an in-place write.
   */
  record Claim(long start, long end, boolean exclusive) {}

  private final DataWriter data;

  /**
   * What one step of a write does: {@code bytes} from the request's position go to {@code
   * hostOffset}; with an {@code allocation}, into new clusters whose head and tail are copied.
   */
  record Step(Claim claim, long hostOffset, long bytes, Allocation allocation) {}

  /**
   * Host clusters for the guest clusters of L2 table {@code l1Index} from {@code l2Index}: new
   * ones, or with {@code keepOld} the one cluster the entry has (COPIED, with extended L2 entries:
   * subclusters not allocated yet are written in place). What is written of them runs from byte
   * {@code cowStartFrom} of the first cluster to byte {@code cowEndTo} of the last (the whole
   * clusters without subclusters; QEMU {@code calculate_l2_meta}).
   */
  record Allocation(
      long l1Index,
      int l2Index,
      long hostOffset,
      int clusters,
      boolean keepOld,
      long cowStartFrom,
      long cowEndTo,
      boolean fresh) {}

  ClusterAllocator(
      Storage file,
      Header header,
      ClusterMapper mapper,
      Refcounts refcounts,
      OverlapGuard guard,
      MetadataCache cache,
      DataWriter data) {
    this.data = data;
    this.path = file.location();
    this.file = file;
    this.allocation = file.capability(Storage.Allocation.class);
    this.g = header.geometry();
    this.cs = g.clusterSize();
    this.v3 = header.version() >= 3;
    this.mapper = mapper;
    this.refcounts = refcounts;
    this.guard = guard;
    this.cache = cache;
    this.lock = cache.lock();
    this.released = lock.newCondition();
  }

  /**
   * Waits, holding the lock between waits, until no write in flight claims a guest cluster of
   * {@code [start, end)}; refuses as {@link OverlapGuard#checkWritable} does once the image turns
   * corrupt.
   */
  void awaitNoClaim(long start, long end) throws IOException {
    while (true) {
      guard.checkWritable();
      if (claims.stream().noneMatch(c -> c.start() < end && c.end() > start)) {
        return;
      }
      released.awaitUninterruptibly();
    }
  }

  /** Maps the first part of {@code [pos, pos + remaining)} to host clusters, allocating them. */
  Step prepare(long pos, long remaining) throws IOException {
    lock.lock();
    try {
      while (true) {
        Step step = tryPrepare(pos, remaining);
        if (step != null) {
          claims.add(step.claim());
          return step;
        }
        released.awaitUninterruptibly();
      }
    } finally {
      lock.unlock();
    }
  }

  /**
   * One attempt of {@link #prepare}: null when a write in flight must end first (an allocation on
   * the first cluster, or any write on a cluster this step would allocate).
   */
  private Step tryPrepare(long pos, long remaining) throws IOException {
    guard.checkWritable();
    long l1Index = g.l1Index(pos);
    long limit = Math.min(remaining, (l1Index + 1) * g.bytesPerL2Table() - pos);
    long start = pos - g.offsetInCluster(pos);
    for (Claim c : claims) {
      if (c.start() < roundUp(pos + limit) && c.end() > start) {
        if (c.start() > start) {
          limit = c.start() - pos; // up to the next write in flight
        } else if (c.exclusive()) {
          return null;
        }
      }
    }
    long l2Offset = writableTable(l1Index, pos);
    L2Table table = mapper.l2Table(l2Offset, l1Index);
    int i = g.l2Index(pos);
    long inCluster = g.offsetInCluster(pos);
    int wanted = (int) ((inCluster + limit + cs - 1) / cs);
    L2Entry first = table.entry(i);
    if (inPlace(first, inCluster, Math.min(limit, cs - inCluster))) {
      int k = 1;
      long host = first.hostClusterOffset();
      while (k < wanted
          && i + k < table.entries()
          && table.entry(i + k).hostClusterOffset() == host + k * cs
          && inPlace(table.entry(i + k), 0, Math.min(cs, inCluster + limit - k * cs))) {
        k++;
      }
      long bytes = Math.min(limit, k * cs - inCluster);
      guard.check(host + inCluster, bytes, pos);
      // An encrypted write rewriting sectors it only touches has them alone while it does
      boolean alone = data.readsAround(host + inCluster, bytes);
      for (Claim c : claims) {
        if (alone && c.start() < start + k * cs && c.end() > start) {
          return null;
        }
      }
      return new Step(new Claim(start, start + k * cs, alone), host + inCluster, bytes, null);
    }
    for (Claim c : claims) {
      if (c.start() <= start && c.end() > start) {
        return null; // an in-place write to the cluster this step replaces
      }
    }
    long scBytes = 1L << g.subclusterBits();
    if (g.extendedL2()
        && (first.word() & L2Entry.QCOW_OFLAG_COPIED) != 0
        && !first.isCompressed()
        && first.hostClusterOffset() != 0
        && first.type(g, 0, v3, false) != SubclusterType.INVALID) {
      // A COPIED cluster whose touched subclusters are not all allocated: written in place, the
      // partly written subclusters copied, the bitmap updated (QEMU's keep_old).
      long host = first.hostClusterOffset();
      long bytes = Math.min(limit, cs - inCluster);
      guard.check(host, cs, pos);
      long from = inCluster & -scBytes;
      long to = (inCluster + bytes + scBytes - 1) & -scBytes;
      return new Step(
          new Claim(start, start + cs, true),
          host + inCluster,
          bytes,
          new Allocation(l1Index, i, host, 1, true, from, to, false));
    }
    int k = 1;
    while (k < wanted
        && i + k < table.entries()
        && !inPlace(table.entry(i + k), 0, Math.min(cs, inCluster + limit - k * cs))) {
      k++;
    }
    long host = refcounts.allocate(k);
    boolean fresh;
    try {
      guard.check(host, k * cs, pos);
      // Clusters past the file's end read as zeros: copy-on-write need not write zeros there. The
      // file is grown here, under the lock, so that no data write outside it changes its length.
      long length = file.length();
      fresh = host >= length;
      if (inCluster == 0 && limit >= k * cs && allocation != null) {
        // Wholly written: reserved as one extent, so the data write neither reserves each block
        // nor allocates at writeback (docs/performance.md), and a full host fails here.
        allocation.reserve(host, k * cs);
      } else if (host + k * cs > length) {
        file.setLength(host + k * cs);
      }
    } catch (IOException e) {
      refcounts.freeNow(host, k * cs);
      throw e;
    }
    long bytes = Math.min(limit, k * cs - inCluster);
    long endInLast = pos + bytes - (start + (k - 1) * cs);
    return new Step(
        new Claim(start, start + k * cs, true),
        host + inCluster,
        bytes,
        new Allocation(
            l1Index,
            i,
            host,
            k,
            false,
            cowStartFrom(first, inCluster),
            cowEndTo(table.entry(i + k - 1), endInLast),
            fresh));
  }

  /**
   * Where the copy before the written bytes starts in the first cluster: 0 without subclusters or
   * for a compressed cluster; else the written subcluster, or the first allocated subcluster of an
   * old cluster when it comes before (QEMU {@code calculate_l2_meta}'s {@code cow_start_from}).
   */
  private long cowStartFrom(L2Entry old, long writeStart) {
    if (!g.extendedL2() || old.isCompressed()) {
      return 0;
    }
    long sc = writeStart >>> g.subclusterBits();
    if (old.hostClusterOffset() != 0) {
      sc = Math.min(sc, Long.numberOfTrailingZeros(old.bitmap() | (1L << 32)));
    }
    return sc << g.subclusterBits();
  }

  /**
   * Where the copy after the written bytes ends in the last cluster ({@code writeEnd} bytes into it
   * are written): the cluster's end without subclusters or for a compressed cluster; else the end
   * of the written subcluster, or of the last allocated subcluster of an old cluster when it comes
   * after ({@code cow_end_to}).
   */
  private long cowEndTo(L2Entry old, long writeEnd) {
    if (!g.extendedL2() || old.isCompressed()) {
      return cs;
    }
    long scBytes = 1L << g.subclusterBits();
    long end = (writeEnd + scBytes - 1) & -scBytes;
    if (old.hostClusterOffset() != 0) {
      long allocated = old.bitmap() & L2Entry.QCOW_L2_BITMAP_ALL_ALLOC;
      end = Math.max(end, (64L - Long.numberOfLeadingZeros(allocated)) << g.subclusterBits());
    }
    return end;
  }

  /**
   * Whether bytes {@code [from, from + bytes)} of the cluster of {@code e} can be written in place:
   * a standard cluster with COPIED whose touched subclusters are all allocated ({@code
   * handle_copied}).
   */
  private boolean inPlace(L2Entry e, long from, long bytes) {
    if ((e.word() & L2Entry.QCOW_OFLAG_COPIED) == 0 || e.isCompressed()) {
      return false;
    }
    int firstSc = (int) (from >>> g.subclusterBits());
    int lastSc = (int) ((from + bytes - 1) >>> g.subclusterBits());
    for (int sc = firstSc; sc <= lastSc; sc++) {
      if (e.type(g, sc, v3, false) != SubclusterType.NORMAL) {
        return false;
      }
    }
    return true;
  }

  /** Adds a write's claim (under the lock, after {@link #awaitNoClaim}). */
  void claim(Claim claim) {
    claims.add(claim);
  }

  /** Ends a write's claim (under the lock), waking the writes that wait for it. */
  void release(Claim claim) {
    claims.remove(claim);
    released.signalAll();
  }

  /** Links the step's new clusters into their L2 table, or gives them back after a failure. */
  void finish(Step step, boolean written) throws IOException {
    lock.lock();
    try {
      Allocation a = step.allocation();
      if (a != null && written) {
        long l2Offset = mapper.l1Entry(a.l1Index()).l2Offset();
        L2Table table = mapper.l2Table(l2Offset, a.l1Index());
        L2Entry[] entries = new L2Entry[a.clusters()];
        for (int k = 0; k < a.clusters(); k++) {
          L2Entry old = table.entry(a.l2Index() + k);
          if (!a.keepOld()) {
            freeOld(old);
          }
          long word = (a.hostOffset() + k * cs) | L2Entry.QCOW_OFLAG_COPIED;
          long bitmap = 0;
          if (g.extendedL2()) {
            long from = k == 0 ? a.cowStartFrom() : 0;
            long to = k == a.clusters() - 1 ? a.cowEndTo() : cs;
            long range = subclusterRange(from, to);
            long kept = old.isCompressed() ? 0 : old.bitmap();
            bitmap = (kept | range) & ~(range << 32);
          }
          entries[k] = new L2Entry(word, bitmap);
        }
        cache.changeTable(l2Offset, table.with(a.l2Index(), entries));
      } else if (a != null && !a.keepOld()) {
        refcounts.freeNow(a.hostOffset(), a.clusters() * cs);
      }
    } finally {
      release(step.claim());
      lock.unlock();
    }
  }

  /**
   * The allocation bits ({@code QCOW_OFLAG_SUB_ALLOC_RANGE}) of the subclusters that hold bytes
   * {@code [from, to)} of a cluster.
   */
  long subclusterRange(long from, long to) {
    int first = (int) (from >>> g.subclusterBits());
    int end = (int) ((to + (1L << g.subclusterBits()) - 1) >>> g.subclusterBits());
    return ((1L << end) - 1) & ~((1L << first) - 1);
  }

  /**
   * Drops the reference an L2 entry that is being replaced held ({@code qcow2_free_any_cluster}).
   */
  void freeOld(L2Entry old) {
    SubclusterType type = old.type(g, 0, v3, false);
    if (type == SubclusterType.COMPRESSED) {
      L2Entry.CompressedDescriptor d = old.compressedDescriptor(g.clusterBits());
      refcounts.freeLater(d.hostOffset(), d.maxLength());
    } else if (type != SubclusterType.INVALID && old.hostClusterOffset() != 0) {
      refcounts.freeLater(old.hostClusterOffset(), cs);
    }
  }

  /**
   * The host offset of the L2 table of {@code l1Index}, made writable first: a new table when there
   * is none, a copy when the table is shared with a snapshot (no COPIED flag; QEMU {@code
   * l2_allocate}).
   */
  long writableTable(long l1Index, long pos) throws IOException {
    long[] l1 = mapper.l1Table();
    if (l1Index >= l1.length) {
      throw new ImageFormatException(
          path, "guest offset " + hex(pos) + " lies past the L1 table (l1_size " + l1.length + ")");
    }
    L1Entry entry = new L1Entry(l1[(int) l1Index]);
    if (entry.hasReservedBits()) {
      throw new ImageFormatException(
          path, "L1[" + l1Index + "] " + hex(entry.word()) + ": reserved bits set");
    }
    long old = entry.l2Offset();
    if (old != 0 && entry.isCopied()) {
      guard.checkNotOnOtherMetadata(old, cs, "the L2 table of L1[" + l1Index + "]");
      return old;
    }
    L2Table base = old == 0 ? L2Table.empty(g) : mapper.l2Table(old, l1Index);
    long fresh = refcounts.allocate(1);
    try {
      guard.check(fresh, cs, pos);
    } catch (IOException e) {
      refcounts.freeNow(fresh, cs);
      throw e;
    }
    guard.addL2Table(fresh, cs);
    cache.changeTable(fresh, base);
    if (old != 0) {
      refcounts.freeLater(old, cs);
      guard.removeL2Table(old);
    }
    long[] copy = l1.clone();
    copy[(int) l1Index] = L1Entry.of(fresh, true).word();
    cache.setL1Table(copy);
    return fresh;
  }

  long roundUp(long offset) {
    return (offset + cs - 1) & -cs;
  }
}
