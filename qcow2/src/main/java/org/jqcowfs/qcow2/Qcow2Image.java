package org.jqcowfs.qcow2;

import static org.jqcowfs.qcow2.Qcow2FormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One qcow2 layer, read-only: the active image or the view of one internal snapshot. Reads map
 * guest offsets through L1 and cached L2 tables to host clusters (spec section 3), decompress
 * compressed clusters, and read unallocated ranges from a backing image given by the caller.
 * Thread-safe; no lock is held while data is read.
 */
public final class Qcow2Image implements Image {
  private static final Logger LOG = LoggerFactory.getLogger(Qcow2Image.class);
  private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(1 << 20).asReadOnlyBuffer();

  private final Path path;
  private final HostFile file;
  private final HostFile dataFile;
  private final Header header;
  private final Geometry geometry;
  private final long[] l1Table;
  private final long virtualSize;
  private final List<Snapshot> snapshots;
  private final String snapshotDamage;
  private final Snapshot snapshot;
  private final L2Cache l2Cache;
  private final CompressedClusterReader compressedReader;
  private volatile Boolean metadataPreallocation;

  private Qcow2Image(
      HostFile file,
      HostFile dataFile,
      Header header,
      long[] l1Table,
      long virtualSize,
      List<Snapshot> snapshots,
      String snapshotDamage,
      Snapshot snapshot,
      long l2CacheBytes) {
    this.path = file.path();
    this.file = file;
    this.dataFile = dataFile;
    this.header = header;
    this.geometry = header.geometry();
    this.l1Table = l1Table;
    this.virtualSize = virtualSize;
    this.snapshots = snapshots;
    this.snapshotDamage = snapshotDamage;
    this.snapshot = snapshot;
    long cacheBytes =
        l2CacheBytes >= 0 ? l2CacheBytes : L2Cache.defaultBytes(geometry, virtualSize);
    this.l2Cache = new L2Cache(cacheBytes, geometry.clusterSize());
    this.compressedReader =
        new CompressedClusterReader(
            file, geometry, Decompressor.forType(header.compressionType()), this::corrupt);
  }

  /** Opens the active image with default options. */
  public static Qcow2Image open(Path path) throws IOException {
    return open(path, Qcow2Options.DEFAULT);
  }

  /**
   * Opens a qcow2 image read-only: header, extensions, L1 table and snapshot table are read and
   * checked; the external data file, if any, is opened (named relative to the image, and followed
   * only as {@link Qcow2Options#names} allows). A damaged snapshot table is ignored with a warning
   * ({@link #snapshotTableDamage}) unless a snapshot is asked for.
   *
   * @throws Qcow2FormatException if the image is refused (message names file, field, value)
   * @throws IOException if a file cannot be opened or read
   */
  public static Qcow2Image open(Path path, Qcow2Options options) throws IOException {
    HostFile file = HostFile.open(path);
    HostFile dataFile = null;
    try {
      Header h = Header.read(file);
      if (h.hasIncompatible(Header.INCOMPAT_CORRUPT)) {
        LOG.warn("{}: the corrupt bit is set; opening read-only anyway", path);
      }
      if (h.hasIncompatible(Header.INCOMPAT_DIRTY)) {
        LOG.warn("{}: the dirty bit is set (refcounts may be stale); reading is unaffected", path);
      }
      List<Snapshot> snapshots;
      String snapshotDamage = null;
      try {
        snapshots = Snapshot.readTable(file, h);
      } catch (Qcow2FormatException e) {
        if (options.snapshot() != null) {
          throw e;
        }
        // The active image does not need the table: a damaged one hides the snapshots only.
        LOG.warn("{}; the snapshot table is ignored", e.getMessage());
        snapshots = List.of();
        snapshotDamage = e.getMessage();
      }
      long l1Offset = h.l1TableOffset();
      int l1Size = h.l1Size();
      long size = h.virtualSize();
      Snapshot chosen = null;
      if (options.snapshot() != null) {
        chosen = find(snapshots, options.snapshot(), path);
        l1Offset = chosen.l1TableOffset();
        l1Size = chosen.l1Size();
        size = chosen.virtualSize() & ~511L;
      }
      long[] l1 = new long[l1Size];
      if (l1Size > 0) {
        ByteBuffer b = ByteBuffer.allocate(l1Size * 8);
        file.readFully(b, l1Offset);
        b.flip();
        b.asLongBuffer().get(l1);
      }
      if (h.dataFileName() != null) {
        NamePolicy names =
            options.names() != null
                ? options.names()
                : NamePolicy.confinedTo(List.of(NamePolicy.directoryOf(path)));
        Path dataPath = names.resolve(path, h.dataFileName(), "external data file");
        try {
          dataFile = HostFile.open(dataPath);
        } catch (IOException e) {
          throw new Qcow2FormatException(
              path, "external data file '" + h.dataFileName() + "': " + e.getMessage());
        }
      }
      return new Qcow2Image(
          file,
          dataFile != null ? dataFile : file,
          h,
          l1,
          size,
          snapshots,
          snapshotDamage,
          chosen,
          options.l2CacheBytes());
    } catch (IOException | RuntimeException e) {
      if (dataFile != null) {
        dataFile.close();
      }
      file.close();
      throw e;
    }
  }

  private static Snapshot find(List<Snapshot> snapshots, String idOrName, Path path)
      throws Qcow2FormatException {
    for (Snapshot s : snapshots) {
      if (s.id().equals(idOrName)) {
        return s;
      }
    }
    for (Snapshot s : snapshots) {
      if (s.name().equals(idOrName)) {
        return s;
      }
    }
    throw new Qcow2FormatException(path, "no snapshot with id or name '" + idOrName + "'");
  }

  @Override
  public Path path() {
    return path;
  }

  @Override
  public long size() {
    return virtualSize;
  }

  /** The parsed header. */
  public Header header() {
    return header;
  }

  /** The address geometry. */
  public Geometry geometry() {
    return geometry;
  }

  /** The internal snapshots, in table order; empty when the table is damaged. */
  public List<Snapshot> snapshots() {
    return snapshots;
  }

  /**
   * Why the snapshot table was ignored: it is damaged (the message names the snapshot and field),
   * and the active image was opened without it. Empty when the table was read.
   */
  public Optional<String> snapshotTableDamage() {
    return Optional.ofNullable(snapshotDamage);
  }

  /** The snapshot this view shows, if it is a snapshot view. */
  public Optional<Snapshot> snapshot() {
    return Optional.ofNullable(snapshot);
  }

  /** The backing file name as stored, if any. */
  public Optional<String> backingFileName() {
    return Optional.ofNullable(header.backingFileName());
  }

  /** The backing format from the header extension, if stored. */
  public Optional<String> backingFormat() {
    return Optional.ofNullable(header.backingFormat());
  }

  /** The file holding guest data: the external data file, or the image itself. */
  public Path dataFilePath() {
    return dataFile.path();
  }

  /** Bytes the image file occupies on disk (qemu-img info's "disk size"). */
  public long allocatedBytes() throws IOException {
    return file.allocatedBytes();
  }

  @Override
  public long hostBytes() throws IOException {
    return file.allocatedBytes() + (dataFile != file ? dataFile.allocatedBytes() : 0);
  }

  /** L2 cache counters. */
  public L2Cache.Stats cacheStats() {
    return l2Cache.stats();
  }

  @Override
  public void read(ByteBuffer dst, long guestOffset) throws IOException {
    read(dst, guestOffset, null);
  }

  /**
   * As {@link Image#read}, reading ranges this layer does not allocate from {@code backing} (zeros
   * where {@code backing} is null or shorter than this image). The request is mapped first; then
   * its separate host ranges are read, and its compressed clusters decompressed, in parallel
   * ({@link ParallelTasks}, as QEMU's {@code qcow2_co_preadv_part} hands each run to its aio task
   * pool).
   *
   * @param backing the image below this one, or null
   * @throws Qcow2FormatException for a corrupt mapping or compressed cluster in the range (naming
   *     L1/L2 place and guest offset)
   * @throws IOException if a host read fails; the whole request fails
   */
  @Override
  public void read(ByteBuffer dst, long guestOffset, Image backing) throws IOException {
    Image.checkRange(guestOffset, dst.remaining(), virtualSize);
    long pos = guestOffset;
    List<CompressedClusterReader.Part> compressed = null;
    List<HostRead> hostReads = null;
    while (dst.hasRemaining()) {
      Run run = mapRun(pos, dst.remaining());
      int n = (int) run.length();
      ByteBuffer part = dst.slice(dst.position(), n);
      switch (run.type()) {
        case NORMAL -> {
          // Gathered: separate host ranges (a fragmented image) are read in parallel.
          if (hostReads == null) {
            hostReads = new ArrayList<>();
          }
          hostReads.add(new HostRead(run.hostOffset(), part));
        }
        case ZERO_PLAIN, ZERO_ALLOC -> fillZeros(part);
        case UNALLOCATED_PLAIN, UNALLOCATED_ALLOC -> readBacking(part, pos, backing);
        case COMPRESSED -> {
          // Gathered, then read and decompressed together (in parallel) once the request is mapped.
          if (compressed == null) {
            compressed = new ArrayList<>();
          }
          compressed.add(new CompressedClusterReader.Part(run, part, pos));
        }
        case INVALID -> throw new IllegalStateException("mapRun never returns INVALID");
      }
      dst.position(dst.position() + n);
      pos += n;
    }
    if (hostReads != null) {
      readHostRanges(hostReads);
    }
    if (compressed != null) {
      compressedReader.read(compressed);
    }
  }

  /**
   * Reads separate ranges of the data file (a fragmented image): on this thread those the page
   * cache does not hold in Linux AIO batches and those it holds from it ({@link
   * HostFile#readRanges}), any others in parallel on {@link ParallelTasks}' I/O helpers, as before
   * there was AIO. The figures are in {@link LinuxAio}.
   */
  private void readHostRanges(List<HostRead> reads) throws IOException {
    int n = reads.size();
    boolean[] done = new boolean[n];
    if (n > 1) {
      ByteBuffer[] dsts = new ByteBuffer[n];
      long[] positions = new long[n];
      for (int i = 0; i < n; i++) {
        dsts[i] = reads.get(i).dst();
        positions[i] = reads.get(i).hostOffset();
      }
      done = dataFile.readRanges(dsts, positions);
    }
    int[] left = new int[n];
    int count = 0;
    for (int i = 0; i < n; i++) {
      if (!done[i]) {
        left[count++] = i;
      }
    }
    ParallelTasks.run(
        count,
        ParallelTasks.IO_HELPERS,
        k -> dataFile.readFully(reads.get(left[k]).dst(), reads.get(left[k]).hostOffset()));
  }

  /**
   * A view of the range when one {@link SubclusterType#NORMAL} run maps all of it (contiguous in
   * the data file, as {@link #read} would read it with one {@code readFully}) and the page cache
   * holds it; null for anything else: zero, unallocated or compressed parts, runs split between
   * host ranges or L2 tables, or bytes not cached.
   */
  @Override
  public CachedView cachedView(long guestOffset, int length) throws IOException {
    Image.checkRange(guestOffset, length, virtualSize);
    Run run = mapRun(guestOffset, length);
    return run.type() == SubclusterType.NORMAL && run.length() == length
        ? dataFile.mapCached(run.hostOffset(), length)
        : null;
  }

  /** A contiguous range of the data file and where its bytes go. */
  private record HostRead(long hostOffset, ByteBuffer dst) {}

  /** Fills {@code dst}'s remaining bytes with zeros from a shared zero buffer. */
  public static void fillZeros(ByteBuffer dst) {
    while (dst.hasRemaining()) {
      int n = Math.min(dst.remaining(), ZEROS.capacity());
      dst.put(ZEROS.duplicate().limit(n));
    }
  }

  private static void readBacking(ByteBuffer part, long pos, Image backing) throws IOException {
    long avail =
        backing == null ? 0 : Math.max(0, Math.min(part.remaining(), backing.size() - pos));
    if (avail > 0) {
      backing.read(part.slice(part.position(), (int) avail), pos);
      part.position(part.position() + (int) avail);
    }
    fillZeros(part);
  }

  @Override
  public Extent blockStatus(long guestOffset, long maxLength) throws IOException {
    Image.checkRange(guestOffset, 1, virtualSize);
    Run r = mapRun(guestOffset, Math.min(maxLength, virtualSize - guestOffset));
    long len = r.length();
    Path dataPath = dataFile.path();
    return switch (r.type()) {
      case NORMAL ->
          metadataPreallocation()
              ? hostFileStatus(guestOffset, len, r.hostOffset())
              : new Extent(guestOffset, len, true, true, false, false, r.hostOffset(), dataPath);
      case COMPRESSED -> new Extent(guestOffset, len, true, true, false, true, -1, null);
      case ZERO_PLAIN -> new Extent(guestOffset, len, true, false, true, false, -1, null);
      case ZERO_ALLOC ->
          new Extent(guestOffset, len, true, false, true, false, r.hostOffset(), dataPath);
      case UNALLOCATED_PLAIN -> Extent.unallocated(guestOffset, len);
      case UNALLOCATED_ALLOC ->
          new Extent(guestOffset, len, false, false, false, false, r.hostOffset(), dataPath);
      case INVALID -> throw new IllegalStateException("mapRun never returns INVALID");
    };
  }

  /**
   * Block status of a data run in a metadata-preallocated image: QEMU asks the host file ({@code
   * BDRV_BLOCK_RECURSE} in {@code bdrv_co_block_status}), so host holes read as zero data.
   */
  private Extent hostFileStatus(long guestOffset, long len, long host) throws IOException {
    Path dataPath = dataFile.path();
    long data = dataFile.seekData(host);
    if (data < 0) {
      return new Extent(guestOffset, len, true, true, true, false, host, dataPath);
    }
    if (data == host) {
      long hole = dataFile.seekHole(host);
      long n = hole < 0 ? len : Math.min(len, hole - host);
      return new Extent(guestOffset, n, true, true, false, false, host, dataPath);
    }
    return new Extent(
        guestOffset, Math.min(len, data - host), true, true, true, false, host, dataPath);
  }

  /** QEMU {@code qcow2_detect_metadata_preallocation}, computed once. */
  private boolean metadataPreallocation() {
    Boolean known = metadataPreallocation;
    if (known != null) {
      return known;
    }
    boolean result;
    try {
      long fileLength = file.length();
      long realClusters = file.allocatedBytes() / geometry.clusterSize();
      long threshold = Math.max(realClusters * 10 / 9, realClusters + 2);
      long endCluster = (fileLength + geometry.clusterSize() - 1) >>> geometry.clusterBits();
      Refcounts refcounts = new Refcounts(file, header);
      long count = 0;
      for (long i = 0; i < endCluster && count < threshold; i++) {
        count += refcounts.refcount(i) != 0 ? 1 : 0;
      }
      result = count >= threshold;
    } catch (IOException e) {
      result = false; // as QEMU: an error means "not preallocated"
    }
    metadataPreallocation = result;
    return result;
  }

  /**
   * A run of guest bytes with one subcluster type inside one L2 table, or, unallocated, across L1
   * entries that map no L2 table; for {@link SubclusterType#NORMAL} runs the host bytes are
   * contiguous.
   *
   * @param length bytes, {@code >= 1}
   * @param type never INVALID
   * @param hostOffset host offset of the run's first byte when {@code type.hasHostOffset()}, else
   *     -1
   * @param entry the L2 entry of the run's first cluster (null when no L2 table maps it)
   * @param l1Index L1 index of the run
   * @param l2Index L2 index of the run's first cluster
   */
  record Run(
      long guestOffset,
      long length,
      SubclusterType type,
      long hostOffset,
      L2Entry entry,
      long l1Index,
      int l2Index) {}

  /** L1 entry {@code index}; 0 (no L2 table) past the end of a table shorter than the disk. */
  private long l1Entry(long index) {
    return index < l1Table.length ? l1Table[(int) index] : 0;
  }

  /** Whether L1 entry {@code index} maps no L2 table and has no reserved bits set. */
  private boolean unallocatedL1Entry(long index) {
    return (l1Entry(index) & (L2Entry.L1E_RESERVED_MASK | L2Entry.L1E_OFFSET_MASK)) == 0;
  }

  /**
   * Maps {@code [pos, pos + maxBytes)} to its first run, like QEMU's {@code qcow2_get_host_offset}
   * with {@code count_contiguous_subclusters}, and checks the entries it uses.
   *
   * @throws Qcow2FormatException naming L1/L2 index and value for a bad L1 entry, L2 table offset,
   *     or L2 entry
   */
  Run mapRun(long pos, long maxBytes) throws IOException {
    long l1Index = geometry.l1Index(pos);
    long tableEnd = (l1Index + 1) * geometry.bytesPerL2Table();
    long limit = Math.min(maxBytes, tableEnd - pos);
    long l1Entry = l1Entry(l1Index);
    if ((l1Entry & L2Entry.L1E_RESERVED_MASK) != 0) {
      throw corruptAt(l1Index, -1, "L1 entry " + hex(l1Entry) + ": reserved bits set", pos);
    }
    long l2Offset = l1Entry & L2Entry.L1E_OFFSET_MASK;
    if (l2Offset == 0) {
      // The unallocated L1 entries that follow belong to the same run: SEEK_DATA across the empty
      // 1 TiB bench disk (2048 entries of 512 MiB) then asks once, not once per entry.
      for (long next = l1Index + 1; limit < maxBytes && unallocatedL1Entry(next); next++) {
        limit = Math.min(maxBytes, (next + 1) * geometry.bytesPerL2Table() - pos);
      }
      return new Run(pos, limit, SubclusterType.UNALLOCATED_PLAIN, -1, null, l1Index, -1);
    }
    if (geometry.offsetInCluster(l2Offset) != 0) {
      throw corruptAt(l1Index, -1, "L2 table offset " + hex(l2Offset) + " unaligned", pos);
    }
    long[] table = l2Cache.get(l2Offset, off -> loadL2(off, l1Index, pos));
    int l2Index = geometry.l2Index(pos);
    int sc = geometry.subclusterIndex(pos);
    L2Entry first = entry(table, l2Index);
    SubclusterType type = first.type(geometry, sc, header.version() >= 3, dataFile != file);
    if (type == SubclusterType.INVALID) {
      throw corruptAt(l1Index, l2Index, invalidReason(first), pos);
    }
    long host = -1;
    if (type.hasHostOffset()) {
      long cluster = first.hostClusterOffset();
      if (geometry.offsetInCluster(cluster) != 0) {
        throw corruptAt(
            l1Index, l2Index, "host cluster offset " + hex(cluster) + " unaligned", pos);
      }
      host = cluster + geometry.offsetInCluster(pos);
      if (dataFile != file && host != pos) {
        throw corruptAt(
            l1Index,
            l2Index,
            "external data file offset " + hex(host) + " differs from the guest offset",
            pos);
      }
    }
    long scBytes = 1L << geometry.subclusterBits();
    long runEnd = (pos & ~(scBytes - 1)) + first.sameTypeRun(geometry, sc, type) * scBytes;
    long wanted = pos + limit;
    if (type != SubclusterType.COMPRESSED) {
      long clusterEnd = pos - geometry.offsetInCluster(pos) + geometry.clusterSize();
      runEnd =
          extendRun(table, l2Index, type, first.hostClusterOffset(), clusterEnd, runEnd, wanted);
    }
    long length = Math.min(runEnd, wanted) - pos;
    checkInFile(type, first, host, length, l1Index, l2Index, pos);
    return new Run(pos, length, type, host, first, l1Index, l2Index);
  }

  /**
   * Extends a run of {@code type} that ends at {@code runEnd} over the L2 entries after {@code
   * l2Index} that continue it: the same type from their first subcluster, and for data, the next
   * host cluster after {@code hostCluster} (the run's entry's). The run goes on only if it reaches
   * {@code clusterEnd}, the end of entry {@code l2Index}'s cluster; it stops at {@code wanted}, at
   * the end of {@code table} and where a run ends inside a cluster. Offsets are guest offsets in
   * bytes but {@code hostCluster}, a host offset; returns the run's new end.
   *
   * <p>A method of its own so that C2 compiles it alone (docs/decisions/jit-extend-run.md).
   */
  private long extendRun(
      long[] table,
      int l2Index,
      SubclusterType type,
      long hostCluster,
      long clusterEnd,
      long runEnd,
      long wanted) {
    long scBytes = 1L << geometry.subclusterBits();
    boolean v3 = header.version() >= 3;
    boolean external = dataFile != file;
    long nextCluster = clusterEnd;
    long expectedHost = hostCluster;
    for (int i = l2Index + 1;
        runEnd == nextCluster && runEnd < wanted && i < geometry.l2Entries();
        i++) {
      L2Entry e = entry(table, i);
      if (e.type(geometry, 0, v3, external) != type) {
        break;
      }
      if (type.hasHostOffset()) {
        expectedHost += geometry.clusterSize();
        if (e.hostClusterOffset() != expectedHost) {
          break;
        }
        if (external && expectedHost != nextCluster) {
          break;
        }
      }
      runEnd = nextCluster + e.sameTypeRun(geometry, 0, type) * scBytes;
      nextCluster += geometry.clusterSize();
    }
    return runEnd;
  }

  /**
   * Refuses a run whose stored bytes lie past the end of their file: raw data past the data file's
   * end, or a compressed stream starting past the image's end. (QEMU reads zeros there.)
   */
  private void checkInFile(
      SubclusterType type,
      L2Entry entry,
      long host,
      long length,
      long l1Index,
      int l2Index,
      long pos)
      throws IOException {
    if (type == SubclusterType.NORMAL) {
      long end = dataFile.length();
      if (host > end - length) {
        throw corruptAt(
            l1Index,
            l2Index,
            "host offset "
                + hex(host)
                + " (+"
                + length
                + " bytes) past the end of "
                + (dataFile != file ? "the external data file" : "the file")
                + " ("
                + hex(end)
                + ")",
            pos);
      }
    } else if (type == SubclusterType.COMPRESSED) {
      long coffset = entry.compressedDescriptor(geometry.clusterBits()).hostOffset();
      long end = file.length();
      if (coffset >= end) {
        throw corruptAt(
            l1Index,
            l2Index,
            "compressed cluster descriptor: host offset "
                + hex(coffset)
                + " past the end of the file ("
                + hex(end)
                + ")",
            pos);
      }
    }
  }

  private static String invalidReason(L2Entry e) {
    if (e.isCompressed()) {
      return "compressed L2 entry "
          + hex(e.word())
          + (e.bitmap() != 0 ? " with subcluster bitmap " + hex(e.bitmap()) : "")
          + " is invalid (high offset bits, a subcluster bitmap, or an external data file)";
    }
    return "L2 entry "
        + hex(e.word())
        + " bitmap "
        + hex(e.bitmap())
        + " is invalid (reserved"
        + " bits, a v2 zero flag, or a subcluster both allocated and zero)";
  }

  private L2Entry entry(long[] table, int index) {
    return geometry.extendedL2()
        ? new L2Entry(table[2 * index], table[2 * index + 1])
        : new L2Entry(table[index], 0);
  }

  private long[] loadL2(long l2Offset, long l1Index, long pos) throws IOException {
    long fileLength = file.length();
    if (l2Offset > fileLength - geometry.clusterSize()) {
      throw corruptAt(
          l1Index,
          -1,
          "L2 table offset "
              + hex(l2Offset)
              + " past the end of the file ("
              + hex(fileLength)
              + ")",
          pos);
    }
    ByteBuffer b = ByteBuffer.allocate((int) geometry.clusterSize());
    file.readFully(b, l2Offset);
    b.flip();
    long[] table = new long[(int) geometry.clusterSize() / 8];
    b.asLongBuffer().get(table);
    return table;
  }

  private Qcow2FormatException corrupt(Run run, String what) {
    return corruptAt(run.l1Index(), run.l2Index(), what, run.guestOffset());
  }

  /**
   * A damaged entry: an L1 entry ({@code l2Index < 0}) spoils the guest range of its whole L2
   * table, an L2 entry the cluster holding {@code pos}.
   */
  private DamagedRangeException corruptAt(long l1Index, int l2Index, String what, long pos) {
    String place = "L1[" + l1Index + "]" + (l2Index >= 0 ? "/L2[" + l2Index + "]" : "");
    long start =
        l2Index < 0 ? l1Index * geometry.bytesPerL2Table() : pos - geometry.offsetInCluster(pos);
    long bytes = l2Index < 0 ? geometry.bytesPerL2Table() : geometry.clusterSize();
    return new DamagedRangeException(
        path,
        place + " (guest offset " + hex(pos) + "): " + what,
        start,
        Math.min(bytes, virtualSize - start));
  }

  @Override
  public void close() throws IOException {
    try {
      if (dataFile != file) {
        dataFile.close();
      }
    } finally {
      file.close();
    }
  }
}
