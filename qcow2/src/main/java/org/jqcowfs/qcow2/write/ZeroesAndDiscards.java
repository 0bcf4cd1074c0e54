package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.locks.ReentrantLock;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.L2Table;
import org.jqcowfs.qcow2.format.SubclusterType;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/**
 * Write-zeroes and discard (QEMU {@code qcow2-cluster.c}: {@code qcow2_cluster_zeroize}, {@code
 * zero_in_l2_slice}, {@code zero_l2_subclusters}, {@code qcow2_cluster_discard}, {@code
 * discard_in_l2_slice}; and {@code qcow2_co_pwrite_zeroes}'s {@code is_zero}): whole clusters get
 * new L2 entries and give back what they no longer reference, pieces of clusters are written as
 * zero data through the writer. Under {@link MetadataCache#lock}.
 */
final class ZeroesAndDiscards {
  /** Writes guest bytes (the zero data of pieces of clusters). */
  @FunctionalInterface
  interface DataWriter {
    void write(ByteBuffer src, long guestOffset) throws IOException;
  }

  private final GuestReader guest;
  private final Location path;
  private final Header header;
  private final Geometry g;
  private final long cs;
  private final boolean v3;
  private final ClusterMapper mapper;
  private final ClusterAllocator allocator;
  private final MetadataCache cache;
  private final ReentrantLock lock;
  private final DataWriter writer;

  ZeroesAndDiscards(
      GuestReader guest,
      Storage file,
      Header header,
      ClusterMapper mapper,
      ClusterAllocator allocator,
      MetadataCache cache,
      DataWriter writer) {
    this.guest = guest;
    this.path = file.location();
    this.header = header;
    this.g = header.geometry();
    this.cs = g.clusterSize();
    this.v3 = header.version() >= 3;
    this.mapper = mapper;
    this.allocator = allocator;
    this.cache = cache;
    this.lock = cache.lock();
    this.writer = writer;
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
    long first = allocator.roundUp(pos);
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
    long first = allocator.roundUp(pos);
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
      long clusterEnd = Math.min(last, allocator.roundUp(at + 1));
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
      allocator.awaitNoClaim(start, start + cs);
      long l1Index = g.l1Index(pos);
      long l2Offset = allocator.writableTable(l1Index, pos);
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
      long range = allocator.subclusterRange(from, from + bytes);
      long bitmap = (old.bitmap() | range << 32) & ~range;
      cache.changeTable(l2Offset, table.with(i, new L2Entry[] {new L2Entry(old.word(), bitmap)}));
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
    long first = allocator.roundUp(pos);
    long last = end & -cs;
    if (first < last) {
      changeClusters(first, last, Change.DISCARD);
    }
  }

  /**
   * Unallocates the clusters {@code [first, end)} whatever the backing file holds there ({@code
   * qcow2_cluster_discard} with {@code full_discard}: a shrinking resize drops what lies past the
   * new end); {@code first} is cluster aligned, {@code end} is too or the old end of the disk.
   */
  void discardFull(long first, long end) throws IOException {
    long last = allocator.roundUp(end);
    if (first < last) {
      changeClusters(first, last, Change.DISCARD_FULL);
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
      writer.write(ByteBuffer.allocate(n), pos);
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
        allocator.awaitNoClaim(pos, chunkEnd);
        if (mapper.l1Entry(l1Index).isUnallocated()
            && (change == Change.DISCARD_FULL || (change == Change.DISCARD && !backingFile))) {
          pos = chunkEnd; // nothing allocated, and unallocated stays as it is
          continue;
        }
        long l2Offset = allocator.writableTable(l1Index, pos);
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
              allocator.freeOld(old);
            }
          }
        }
        cache.changeTable(l2Offset, table.with(i0, entries));
        pos = chunkEnd;
      }
    } finally {
      lock.unlock();
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
}
