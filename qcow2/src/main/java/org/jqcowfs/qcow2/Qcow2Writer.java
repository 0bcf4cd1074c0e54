package org.jqcowfs.qcow2;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.L2Table;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.format.SubclusterType;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The write side of one qcow2 image (QEMU {@code qcow2_co_pwritev_part}, {@code
 * qcow2_alloc_host_offset}, {@code qcow2_alloc_cluster_link_l2}): writes land in place in clusters
 * whose L2 entry is COPIED; any other cluster (unallocated, zero, compressed, shared with a
 * snapshot) gets a new host cluster, written whole: the head and tail the request does not cover
 * are copied from what the guest reads there now (the old cluster, the backing image, or zeros).
 *
 * <p>Metadata has one owner, this object, under one lock; data is read and written outside it. A
 * write to a cluster that an allocation in flight covers waits for it ({@code
 * handle_dependencies}). Changed L2 tables, refcount blocks and the L1 table stay in memory until
 * {@link #flush}, which writes them in the order that keeps refcount >= references at every
 * instant: refcounts (and copied data) synced before the L2 tables that reference them, L2 tables
 * synced before the L1 entries that name them, and references removed on disk before their
 * clusters' refcounts drop.
 */
final class Qcow2Writer {
  private static final Logger LOG = LoggerFactory.getLogger(Qcow2Writer.class);

  private final GuestReader guest;
  private final Location path;
  private final Storage file;
  private final Storage.Allocation allocation;
  private final Header header;
  private final Geometry g;
  private final long cs;
  private final boolean v3;
  private final ClusterMapper mapper;
  private final L2Cache l2Cache;
  private final Refcounts refcounts;

  /** Metadata but the active L2 tables. */
  private final MetadataRanges metadata = new MetadataRanges();

  /** The active L2 tables. */
  private final MetadataRanges l2Tables = new MetadataRanges();

  private final ReentrantLock lock = new ReentrantLock();
  private final Condition released = lock.newCondition();
  private final List<Claim> claims = new ArrayList<>();
  private final Map<Long, L2Table> dirtyTables = new LinkedHashMap<>();
  private boolean l1Dirty;
  private String corrupt;

  /**
   * Guest clusters {@code [start, end)} (byte offsets) that a write in flight uses: an allocation
   * ({@code exclusive}) or an in-place write.
   */
  private record Claim(long start, long end, boolean exclusive) {}

  /**
   * What one step of a write does: {@code bytes} from the request's position go to {@code
   * hostOffset}; with an {@code allocation}, into new clusters whose head and tail are copied.
   */
  private record Step(Claim claim, long hostOffset, long bytes, Allocation allocation) {}

  /**
   * Host clusters for the guest clusters of L2 table {@code l1Index} from {@code l2Index}: new
   * ones, or with {@code keepOld} the one cluster the entry has (COPIED, with extended L2 entries:
   * subclusters not allocated yet are written in place). What is written of them runs from byte
   * {@code cowStartFrom} of the first cluster to byte {@code cowEndTo} of the last (the whole
   * clusters without subclusters; QEMU {@code calculate_l2_meta}).
   */
  private record Allocation(
      long l1Index,
      int l2Index,
      long hostOffset,
      int clusters,
      boolean keepOld,
      long cowStartFrom,
      long cowEndTo,
      boolean fresh) {}

  Qcow2Writer(
      GuestReader guest,
      Storage file,
      Header header,
      ClusterMapper mapper,
      L2Cache l2Cache,
      List<Snapshot> snapshots,
      long snapshotTableBytes)
      throws IOException {
    this.guest = guest;
    this.path = file.location();
    this.file = file;
    this.allocation = file.capability(Storage.Allocation.class);
    this.header = header;
    this.g = header.geometry();
    this.cs = g.clusterSize();
    this.v3 = header.version() >= 3;
    this.mapper = mapper;
    this.l2Cache = l2Cache;
    this.refcounts = new Refcounts(file, header);
    metadata.add(0, cs, "the header");
    metadata.add(header.l1TableOffset(), header.l1Size() * 8L, "the active L1 table");
    metadata.add(
        header.refcountTableOffset(), header.refcountTableClusters() * cs, "the refcount table");
    for (long word : refcounts.table()) {
      metadata.add(word & Refcounts.REFT_OFFSET_MASK, cs, "a refcount block");
    }
    metadata.add(header.snapshotsOffset(), snapshotTableBytes, "the snapshot table");
    for (Snapshot s : snapshots) {
      metadata.add(s.l1TableOffset(), s.l1Size() * 8L, "the L1 table of snapshot " + s.id());
    }
    for (long word : mapper.l1Table()) {
      if (new L1Entry(word).l2Offset() != 0) {
        l2Tables.add(new L1Entry(word).l2Offset(), cs, "an L2 table");
      }
    }
    refcounts.setMetadataSink(
        new Refcounts.MetadataSink() {
          @Override
          public void added(long hostOffset, long bytes) throws IOException {
            checkOverlap(hostOffset, bytes, "a refcount block or table");
            metadata.add(hostOffset, bytes, "a refcount block or table");
          }

          @Override
          public void removed(long hostOffset, long bytes) {
            metadata.remove(hostOffset);
          }
        });
    if (v3 && header.autoclearFeatures() != 0) {
      // The spec: a writer clears the autoclear bits it does not keep up to date (bitmaps).
      file.write(ByteBuffer.allocate(8), Header.OFF_AUTOCLEAR_FEATURES);
      file.flush();
      LOG.info("{}: autoclear bits {} cleared", path, hex(header.autoclearFeatures()));
    }
  }

  /**
   * Writes {@code src}'s remaining bytes at {@code guestOffset}; the ranges copied into new
   * clusters are read as the guest reads them now ({@link GuestReader}).
   */
  void write(ByteBuffer src, long guestOffset) throws IOException {
    long pos = guestOffset;
    while (src.hasRemaining()) {
      Step step = prepare(pos, src.remaining());
      int n = (int) step.bytes();
      ByteBuffer part = src.slice(src.position(), n);
      boolean done = false;
      try {
        if (step.allocation() == null) {
          file.write(part, step.hostOffset());
        } else {
          writeAllocated(step, part, pos);
        }
        done = true;
      } finally {
        finish(step, done);
      }
      src.position(src.position() + n);
      pos += n;
    }
  }

  /** What {@link #changeClusters} does to each whole cluster. */
  private enum Change {
    /** Write-zeroes keeping the allocation ({@code zero_in_l2_slice} without unmap). */
    ZERO,
    /** Write-zeroes giving the cluster back ({@code zero_in_l2_slice} with unmap). */
    ZERO_UNMAP,
    /**
     * A guest discard: reads as zeros, or on v2 as the backing file ({@code discard_in_l2_slice}).
     */
    DISCARD,
    /** A discard after which the backing file shows through ({@code full_discard}). */
    DISCARD_FULL
  }

  /**
   * Makes {@code [pos, pos + bytes)} read as zeros (QEMU {@code qcow2_co_pwrite_zeroes}): whole
   * clusters get the zero flag (v3; a v2 image without a backing file has them discarded), and keep
   * their host cluster unless {@code mayUnmap}; the parts of clusters around them, and everything
   * on a v2 image with a backing file, are written as zero data (as the block layer does when the
   * driver answers ENOTSUP).
   */
  void writeZeroes(long pos, long bytes, boolean mayUnmap) throws IOException {
    if (g.extendedL2()) {
      writeZeroSubclusters(pos, bytes, mayUnmap);
      return;
    }
    long end = pos + bytes;
    long first = roundUp(pos);
    long last = end & -cs;
    Change change = v3 ? (mayUnmap ? Change.ZERO_UNMAP : Change.ZERO) : Change.DISCARD_FULL;
    if (first >= last || (!v3 && header.backingFileName() != null)) {
      writeZeroData(pos, bytes);
      return;
    }
    writeZeroData(pos, first - pos);
    changeClusters(first, last, change);
    writeZeroData(last, end - last);
  }

  /**
   * Makes {@code [pos, pos + bytes)} read as zeros and gives back what stores it, as Linux's {@code
   * FALLOC_FL_PUNCH_HOLE} promises: the whole clusters are discarded ({@link #discard}, which on an
   * image without a backing file leaves unallocated clusters as they are, without allocating an L2
   * table for them), the parts of clusters around them get {@link #writeZeroes} with unmap. On a v2
   * image with a backing file a discarded cluster would read as the backing file: there all of it
   * is write-zeroes.
   */
  void punchHole(long pos, long bytes) throws IOException {
    long end = pos + bytes;
    long first = roundUp(pos);
    long last = end & -cs;
    if (first >= last || (!v3 && header.backingFileName() != null)) {
      writeZeroes(pos, bytes, true);
      return;
    }
    if (pos < first) {
      writeZeroes(pos, first - pos, true);
    }
    discard(first, last - first);
    if (last < end) {
      writeZeroes(last, end - last, true);
    }
  }

  /**
   * {@link #writeZeroes} with extended L2 entries, as QEMU aligns it to subclusters ({@code
   * pwrite_zeroes_alignment}): a piece of a subcluster gets the subcluster's zero bit when the rest
   * of the subcluster reads as zeros by block status and it holds no data ({@code
   * qcow2_co_pwrite_zeroes}), else zero data; whole subclusters of a partly covered cluster get
   * their zero bits, their allocation bits cleared ({@code zero_l2_subclusters}); whole clusters as
   * {@link #writeZeroes}. At the disk's end the last subcluster counts as whole.
   */
  private void writeZeroSubclusters(long pos, long bytes, boolean mayUnmap) throws IOException {
    long sc = 1L << g.subclusterBits();
    long end = pos + bytes;
    long alignedEnd = end == guest.size() ? (end + sc - 1) & -sc : end;
    long first = (pos + sc - 1) & -sc; // the first subcluster boundary from pos
    long last = alignedEnd & -sc; // the end of the last whole subcluster
    if (pos < first) {
      zeroPieceOfSubcluster(pos, Math.min(first, end) - pos);
    }
    for (long at = first; at < last; ) {
      long clusterEnd = Math.min(last, roundUp(at + 1));
      if (at == (at & -cs) && clusterEnd - at == cs) {
        long wholeEnd = last & -cs;
        changeClusters(at, wholeEnd, mayUnmap ? Change.ZERO_UNMAP : Change.ZERO);
        at = wholeEnd;
      } else {
        if (!zeroSubclustersOf(at, clusterEnd - at, false)) {
          writeZeroData(at, clusterEnd - at); // compressed: no partial zeroing
        }
        at = clusterEnd;
      }
    }
    long tail = Math.max(first, last);
    if (tail < end) {
      zeroPieceOfSubcluster(tail, end - tail);
    }
  }

  /**
   * Write-zeroes of {@code [pos, pos + bytes)} inside one subcluster ({@code
   * qcow2_co_pwrite_zeroes} with a head or tail): the whole subcluster is made zero when the rest
   * of it reads as zeros ({@code is_zero}) and it holds no data of this image, else zero data is
   * written.
   */
  private void zeroPieceOfSubcluster(long pos, long bytes) throws IOException {
    long sc = 1L << g.subclusterBits();
    long start = pos & -sc;
    long end = Math.min(start + sc, guest.size());
    boolean restIsZero =
        guest.isZero(start, pos - start) && guest.isZero(pos + bytes, end - (pos + bytes));
    if (!restIsZero || !zeroSubclustersOf(start, sc, true)) {
      writeZeroData(pos, bytes);
    }
  }

  /**
   * Zero bits for the subclusters of {@code [pos, pos + bytes)}, subcluster-aligned inside one
   * cluster, their allocation bits cleared; the host cluster stays ({@code zero_l2_subclusters}).
   *
   * @param onlyWithoutData change it only if the (one) subcluster holds no data of this image
   * @return false when nothing was changed: a compressed cluster (it cannot be zeroed in part), or
   *     data where {@code onlyWithoutData} forbids it; the caller writes zero data then
   */
  private boolean zeroSubclustersOf(long pos, long bytes, boolean onlyWithoutData)
      throws IOException {
    long start = pos & -cs;
    lock.lock();
    try {
      awaitNoClaim(start, start + cs);
      long l1Index = g.l1Index(pos);
      long l2Offset = writableTable(l1Index, pos);
      L2Table table = mapper.l2Table(l2Offset, l1Index);
      int i = g.l2Index(pos);
      L2Entry old = table.entry(i);
      SubclusterType type = old.type(g, (int) ((pos - start) >>> g.subclusterBits()), v3, false);
      if (type == SubclusterType.INVALID) {
        throw invalidEntry(l1Index, i, pos, old);
      }
      if (type == SubclusterType.COMPRESSED || (onlyWithoutData && type == SubclusterType.NORMAL)) {
        return false;
      }
      long from = pos - start;
      long range = subclusterRange(from, from + bytes);
      long bitmap = (old.bitmap() | range << 32) & ~range;
      changeTable(l2Offset, table.with(i, new L2Entry[] {new L2Entry(old.word(), bitmap)}));
      return true;
    } finally {
      lock.unlock();
    }
  }

  /**
   * Discards the whole clusters in {@code [pos, pos + bytes)} (QEMU {@code qcow2_co_pdiscard} and
   * {@code qcow2_cluster_discard}): their host clusters are freed, and they read as zeros (v3, or
   * no backing file) or as the backing file (v2). Parts of clusters are left alone, as QEMU 7.2
   * leaves them (its discard alignment is the cluster, with extended L2 entries too).
   */
  void discard(long pos, long bytes) throws IOException {
    long end = pos + bytes;
    long first = roundUp(pos);
    long last = end & -cs;
    if (first < last) {
      changeClusters(first, last, Change.DISCARD);
    }
  }

  /**
   * Writes zero data to {@code [pos, pos + bytes)}, unless it reads as zeros already (through this
   * image and the backing file): a piece of an unallocated cluster then stays unallocated, as
   * QEMU's {@code is_zero} keeps it from allocating (mkfs.ext4's first probe, a 4 KiB discard,
   * allocated a cluster and an L2 table that the whole-disk discard after it then walked).
   */
  private void writeZeroData(long pos, long bytes) throws IOException {
    if (bytes <= 0 || guest.isZero(pos, bytes)) {
      return;
    }
    while (bytes > 0) {
      int n = (int) Math.min(bytes, 1 << 20);
      write(ByteBuffer.allocate(n), pos);
      pos += n;
      bytes -= n;
    }
  }

  /**
   * Applies {@code change} to the L2 entries of the whole clusters {@code [first, last)}, once no
   * write in flight uses them (so that no write lands in a cluster after it is freed), and frees
   * the host clusters they no longer reference.
   */
  private void changeClusters(long first, long last, Change change) throws IOException {
    boolean backingFile = header.backingFileName() != null;
    lock.lock();
    try {
      long pos = first;
      while (pos < last) {
        long l1Index = g.l1Index(pos);
        long chunkEnd = Math.min(last, (l1Index + 1) * g.bytesPerL2Table());
        awaitNoClaim(pos, chunkEnd);
        if (mapper.l1Entry(l1Index).isUnallocated()
            && (change == Change.DISCARD_FULL || (change == Change.DISCARD && !backingFile))) {
          pos = chunkEnd; // nothing allocated, and unallocated stays as it is
          continue;
        }
        long l2Offset = writableTable(l1Index, pos);
        L2Table table = mapper.l2Table(l2Offset, l1Index);
        int i0 = g.l2Index(pos);
        int n = (int) ((chunkEnd - pos) >>> g.clusterBits());
        L2Entry[] entries = new L2Entry[n];
        for (int k = 0; k < n; k++) {
          L2Entry old = table.entry(i0 + k);
          if (old.type(g, 0, v3, false) == SubclusterType.INVALID) {
            throw invalidEntry(l1Index, i0 + k, pos + k * cs, old);
          }
          entries[k] = changed(old, change, backingFile);
          if (!entries[k].equals(old)) {
            boolean keeps =
                !old.isCompressed()
                    && entries[k].hostClusterOffset() == old.hostClusterOffset()
                    && old.hostClusterOffset() != 0;
            if (!keeps) {
              freeOld(old);
            }
          }
        }
        changeTable(l2Offset, table.with(i0, entries));
        pos = chunkEnd;
      }
    } finally {
      lock.unlock();
    }
  }

  /**
   * Waits, holding the lock between waits, until no write in flight claims a guest cluster of
   * {@code [start, end)}; refuses as {@link #checkWritable} does once the image turns corrupt.
   */
  private void awaitNoClaim(long start, long end) throws IOException {
    while (true) {
      checkWritable();
      if (claims.stream().noneMatch(c -> c.start() < end && c.end() > start)) {
        return;
      }
      released.awaitUninterruptibly();
    }
  }

  /** The refusal to change an L2 entry QEMU could not read either. */
  private ImageFormatException invalidEntry(long l1Index, int l2Index, long pos, L2Entry old) {
    return new ImageFormatException(
        path,
        "L1["
            + l1Index
            + "]/L2["
            + l2Index
            + "] (guest offset "
            + hex(pos)
            + "): L2 entry "
            + hex(old.word())
            + " is invalid; not changed");
  }

  /** The entry that replaces {@code old} under {@code change}. */
  private L2Entry changed(L2Entry old, Change change, boolean backingFile) {
    boolean stored = old.isCompressed() || old.hostClusterOffset() != 0;
    boolean ext = g.extendedL2();
    L2Entry zero =
        ext
            ? new L2Entry(0, L2Entry.QCOW_L2_BITMAP_ALL_ZEROES)
            : new L2Entry(L2Entry.QCOW_OFLAG_ZERO, 0);
    return switch (change) {
      case ZERO -> {
        if (old.isCompressed()) {
          yield zero;
        }
        long kept = old.word() & (L2Entry.L2E_OFFSET_MASK | L2Entry.QCOW_OFLAG_COPIED);
        yield ext
            ? new L2Entry(kept, L2Entry.QCOW_L2_BITMAP_ALL_ZEROES)
            : new L2Entry(kept | L2Entry.QCOW_OFLAG_ZERO, 0);
      }
      case ZERO_UNMAP -> zero;
      case DISCARD -> {
        if (!stored && !backingFile) {
          yield old;
        }
        yield ext || v3 ? zero : new L2Entry(0, 0);
      }
      case DISCARD_FULL -> new L2Entry(0, 0);
    };
  }

  /**
   * Gives every unallocated guest cluster a host cluster, table by table: the L2 table, then its
   * clusters in a row (QEMU {@code preallocate_co} for {@code preallocation=metadata}); the file
   * then reaches past the last one. With {@code reserve} their space is reserved ({@code falloc}),
   * with {@code zeroes} also written ({@code full}). Synced at the end.
   */
  void preallocate(boolean reserve, boolean zeroes) throws IOException {
    long size = guest.size();
    long end = 0;
    lock.lock();
    try {
      checkWritable();
      for (long l1Index = 0; l1Index * g.bytesPerL2Table() < size; l1Index++) {
        long pos = l1Index * g.bytesPerL2Table();
        long l2Offset = writableTable(l1Index, pos);
        L2Table table = mapper.l2Table(l2Offset, l1Index);
        int n = (int) Math.min(g.l2Entries(), (size - pos + cs - 1) / cs);
        L2Entry[] entries = new L2Entry[n];
        int missing = 0;
        for (int i = 0; i < n; i++) {
          missing += table.entry(i).hostClusterOffset() == 0 ? 1 : 0;
        }
        long host = missing == 0 ? 0 : refcounts.allocate(missing);
        checkOverlap(host, (long) missing * cs, pos);
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
        changeTable(l2Offset, table.with(0, entries));
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
    flush();
  }

  /** Maps the first part of {@code [pos, pos + remaining)} to host clusters, allocating them. */
  private Step prepare(long pos, long remaining) throws IOException {
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
    checkWritable();
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
      checkOverlap(host + inCluster, bytes, pos);
      return new Step(new Claim(start, start + k * cs, false), host + inCluster, bytes, null);
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
      checkOverlap(host, cs, pos);
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
      checkOverlap(host, k * cs, pos);
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

  /**
   * Writes the new clusters of {@code step}: the head before {@code pos} and the tail after the
   * data, read as the guest sees them now, around {@code data} ({@code perform_cow}).
   */
  private void writeAllocated(Step step, ByteBuffer data, long pos) throws IOException {
    Allocation a = step.allocation();
    long start = step.claim().start();
    long copyFrom = start + a.cowStartFrom();
    long dataEnd = pos + data.remaining();
    long copyTo = start + (a.clusters() - 1) * cs + a.cowEndTo();
    // QEMU's is_zero_cow: a region that reads as zeros is not written into a fresh cluster
    if (a.fresh() && guest.isZero(copyFrom, pos - copyFrom)) {
      copyFrom = pos;
    }
    if (a.fresh() && guest.isZero(dataEnd, copyTo - dataEnd)) {
      copyTo = dataEnd;
    }
    long hostStart = a.hostOffset() + (copyFrom - start);
    if (copyFrom == pos && copyTo == dataEnd) {
      file.write(data.duplicate(), hostStart);
      return;
    }
    if (copyTo - copyFrom > COW_BUFFER_BYTES) { // large data: no copy of it into a buffer
      if (pos > copyFrom) {
        file.write(current(copyFrom, pos - copyFrom), hostStart);
      }
      file.write(data.duplicate(), a.hostOffset() + (pos - start));
      if (copyTo > dataEnd) {
        file.write(current(dataEnd, copyTo - dataEnd), a.hostOffset() + (dataEnd - start));
      }
      return;
    }
    // one write of head, data and tail (QEMU's perform_cow gathers them into one request)
    ByteBuffer b = cowBuffer((int) (copyTo - copyFrom));
    readCurrent(b.slice(0, (int) (pos - copyFrom)), copyFrom);
    b.put((int) (pos - copyFrom), data.duplicate(), 0, data.remaining());
    readCurrent(b.slice((int) (dataEnd - copyFrom), (int) (copyTo - dataEnd)), dataEnd);
    file.write(b, hostStart);
  }

  /** The largest copy-on-write request written as one buffer (per worker thread). */
  private static final int COW_BUFFER_BYTES = 1 << 20;

  private static final ThreadLocal<ByteBuffer> COW_BUFFER = new ThreadLocal<>();

  /** This thread's buffer for a copy-on-write request of {@code bytes}, position 0. */
  private static ByteBuffer cowBuffer(int bytes) {
    ByteBuffer b = COW_BUFFER.get();
    if (b == null || b.capacity() < bytes) {
      b = ByteBuffer.allocateDirect(Math.max(bytes, 128 << 10));
      COW_BUFFER.set(b);
    }
    return b.clear().limit(bytes);
  }

  /** Reads the guest bytes at {@code pos} into all of {@code dst} (zeros past the disk's end). */
  private void readCurrent(ByteBuffer dst, long pos) throws IOException {
    int inDisk = (int) Math.max(0, Math.min(dst.remaining(), guest.size() - pos));
    if (inDisk > 0) {
      guest.read(dst.slice(0, inDisk), pos);
    }
    for (int i = inDisk; i < dst.remaining(); i++) {
      dst.put(i, (byte) 0);
    }
  }

  /** The {@code bytes} guest bytes at {@code pos} as they read now (zeros past the disk's end). */
  private ByteBuffer current(long pos, long bytes) throws IOException {
    ByteBuffer b = ByteBuffer.allocate((int) bytes);
    readCurrent(b, pos);
    return b;
  }

  /** Links the step's new clusters into their L2 table, or gives them back after a failure. */
  private void finish(Step step, boolean written) throws IOException {
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
        changeTable(l2Offset, table.with(a.l2Index(), entries));
      } else if (a != null && !a.keepOld()) {
        refcounts.freeNow(a.hostOffset(), a.clusters() * cs);
      }
    } finally {
      claims.remove(step.claim());
      released.signalAll();
      lock.unlock();
    }
  }

  /**
   * The allocation bits ({@code QCOW_OFLAG_SUB_ALLOC_RANGE}) of the subclusters that hold bytes
   * {@code [from, to)} of a cluster.
   */
  private long subclusterRange(long from, long to) {
    int first = (int) (from >>> g.subclusterBits());
    int end = (int) ((to + (1L << g.subclusterBits()) - 1) >>> g.subclusterBits());
    return ((1L << end) - 1) & ~((1L << first) - 1);
  }

  /**
   * Drops the reference an L2 entry that is being replaced held ({@code qcow2_free_any_cluster}).
   */
  private void freeOld(L2Entry old) {
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
  private long writableTable(long l1Index, long pos) throws IOException {
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
      checkOverlap(metadata, old, cs, "the L2 table of L1[" + l1Index + "]");
      return old;
    }
    L2Table base = old == 0 ? L2Table.empty(g) : mapper.l2Table(old, l1Index);
    long fresh = refcounts.allocate(1);
    try {
      checkOverlap(fresh, cs, pos);
    } catch (IOException e) {
      refcounts.freeNow(fresh, cs);
      throw e;
    }
    l2Tables.add(fresh, cs, "an L2 table");
    changeTable(fresh, base);
    if (old != 0) {
      refcounts.freeLater(old, cs);
      l2Tables.remove(old);
    }
    long[] copy = l1.clone();
    copy[(int) l1Index] = L1Entry.of(fresh, true).word();
    mapper.setL1Table(copy);
    l1Dirty = true;
    return fresh;
  }

  private void changeTable(long l2Offset, L2Table table) {
    dirtyTables.put(l2Offset, table);
    l2Cache.pin(l2Offset, table);
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
        checkOverlap(metadata, e.getKey(), cs, "an L2 table");
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
      file.write(b, header.l1TableOffset());
      file.flush();
      l1Dirty = false;
    }
    if (refcounts.hasFrees()) {
      refcounts.applyFrees();
      refcounts.writeDirty();
      file.flush();
    }
  }

  private void checkWritable() throws IOException {
    if (corrupt != null) {
      throw new IOException(path + ": refusing to write: the image is corrupt (" + corrupt + ")");
    }
  }

  /**
   * Refuses a write of {@code [hostOffset, hostOffset + bytes)} that would land on metadata ({@code
   * qcow2_pre_write_overlap_check}): the image is marked corrupt, as QEMU marks it.
   *
   * @param why the guest offset the write is for, or what is written
   */
  private void checkOverlap(long hostOffset, long bytes, Object why) throws IOException {
    checkOverlap(l2Tables, hostOffset, bytes, why);
    checkOverlap(metadata, hostOffset, bytes, why);
  }

  /** As {@link #checkOverlap(long, long, Object)}, against {@code ranges} only. */
  private void checkOverlap(MetadataRanges ranges, long hostOffset, long bytes, Object why)
      throws IOException {
    String hit = ranges.overlap(hostOffset, bytes);
    if (hit == null) {
      return;
    }
    String what =
        "a write of host range "
            + hex(hostOffset)
            + " (+"
            + bytes
            + " bytes"
            + (why instanceof Long guest ? ", for guest offset " + hex(guest) : ", " + why)
            + ") would overwrite "
            + hit;
    corrupt = what;
    LOG.error("{}: {}; the image is marked corrupt", path, what);
    if (v3) {
      ByteBuffer bits = ByteBuffer.allocate(8);
      bits.putLong(0, header.incompatibleFeatures() | Header.INCOMPAT_CORRUPT);
      file.write(bits, Header.OFF_INCOMPATIBLE_FEATURES);
      file.flush();
    }
    throw new IOException(path + ": " + what + "; the image is now marked corrupt");
  }

  private long roundUp(long offset) {
    return (offset + cs - 1) & -cs;
  }
}
