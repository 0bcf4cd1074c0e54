package org.jqcowfs.qcow2.metadata;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.jqcowfs.image.DamagedRangeException;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.L2Table;
import org.jqcowfs.qcow2.format.SubclusterType;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/**
 * Maps guest ranges of one qcow2 layer to {@link Mapping}s through its L1 table and cached L2
 * tables (spec section 3; QEMU {@code qcow2-cluster.c}), checking every entry it uses. A bad entry
 * is a {@link DamagedRangeException} naming its L1/L2 place and the guest range it spoils.
 * Thread-safe: the L1 table is replaced whole by a writer ({@link #setL1Table}), never changed in
 * place, and {@link L2Cache} loads each table once.
 */
public final class ClusterMapper {
  private final Location path;
  private final Storage file;
  private final Storage dataFile;
  private final Geometry geometry;
  private final boolean v3;
  private volatile long[] l1Table;
  private final long virtualSize;
  private final L2Cache l2Cache;

  /**
   * @param file the image file (L2 tables, compressed clusters)
   * @param dataFile the file holding guest data: {@code file}, or the external data file
   * @param l1Table the L1 table's entries as stored
   * @param virtualSize the disk's bytes, to which damaged ranges are clipped
   */
  private final boolean encrypted;

  /**
   * A mapper whose data clusters are {@code encrypted}: their runs read as {@link
   * Mapping.ReadKind#DECODED}, never as the host bytes.
   */
  public ClusterMapper(
      Storage file,
      Storage dataFile,
      Geometry geometry,
      int version,
      long[] l1Table,
      long virtualSize,
      L2Cache l2Cache,
      boolean encrypted) {
    this.encrypted = encrypted;
    this.path = file.location();
    this.file = file;
    this.dataFile = dataFile;
    this.geometry = geometry;
    this.v3 = version >= 3;
    this.l1Table = l1Table;
    this.virtualSize = virtualSize;
    this.l2Cache = l2Cache;
  }

  /** L1 entry {@code index}; none (no L2 table) past the end of a table shorter than the disk. */
  public L1Entry l1Entry(long index) {
    long[] l1 = l1Table;
    return new L1Entry(index < l1.length ? l1[(int) index] : 0);
  }

  /** The L1 table's entries now; the caller must not change the array. */
  public long[] l1Table() {
    return l1Table;
  }

  /** Replaces the L1 table by {@code entries}, which no one changes afterwards. */
  public void setL1Table(long[] entries) {
    l1Table = entries;
  }

  /**
   * The L2 table at {@code l2Offset}, which L1 entry {@code l1Index} names, through the cache.
   *
   * @throws ImageFormatException if the table lies past the end of the file
   */
  public L2Table l2Table(long l2Offset, long l1Index) throws IOException {
    long pos = l1Index * geometry.bytesPerL2Table();
    return l2Cache.get(l2Offset, off -> loadL2(off, l1Index, pos));
  }

  /**
   * Maps {@code [pos, pos + maxBytes)} to its first run, like QEMU's {@code qcow2_get_host_offset}
   * with {@code count_contiguous_subclusters}, and checks the entries it uses.
   *
   * @throws ImageFormatException naming L1/L2 index and value for a bad L1 entry, L2 table offset,
   *     or L2 entry
   */
  public Mapping map(long pos, long maxBytes) throws IOException {
    long l1Index = geometry.l1Index(pos);
    long tableEnd = (l1Index + 1) * geometry.bytesPerL2Table();
    long limit = Math.min(maxBytes, tableEnd - pos);
    L1Entry l1Entry = l1Entry(l1Index);
    if (l1Entry.hasReservedBits()) {
      throw corruptAt(l1Index, -1, "L1 entry " + hex(l1Entry.word()) + ": reserved bits set", pos);
    }
    long l2Offset = l1Entry.l2Offset();
    if (l2Offset == 0) {
      // The unallocated L1 entries that follow belong to the same run: SEEK_DATA across the empty
      // 1 TiB bench disk (2048 entries of 512 MiB) then asks once, not once per entry.
      for (long next = l1Index + 1; limit < maxBytes && l1Entry(next).isUnallocated(); next++) {
        limit = Math.min(maxBytes, (next + 1) * geometry.bytesPerL2Table() - pos);
      }
      return new Mapping(
          pos,
          limit,
          SubclusterType.UNALLOCATED_PLAIN,
          -1,
          null,
          l1Index,
          -1,
          Mapping.ReadKind.BELOW);
    }
    if (geometry.offsetInCluster(l2Offset) != 0) {
      throw corruptAt(l1Index, -1, "L2 table offset " + hex(l2Offset) + " unaligned", pos);
    }
    L2Table table = l2Cache.get(l2Offset, off -> loadL2(off, l1Index, pos));
    int l2Index = geometry.l2Index(pos);
    int sc = geometry.subclusterIndex(pos);
    L2Entry first = table.entry(l2Index);
    SubclusterType type = first.type(geometry, sc, v3, dataFile != file);
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
    Mapping.ReadKind kind = Mapping.ReadKind.of(type);
    if (encrypted && kind == Mapping.ReadKind.HOST) {
      kind = Mapping.ReadKind.DECODED; // the host bytes are ciphertext
    }
    return new Mapping(pos, length, type, host, first, l1Index, l2Index, kind);
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
      L2Table table,
      int l2Index,
      SubclusterType type,
      long hostCluster,
      long clusterEnd,
      long runEnd,
      long wanted) {
    long scBytes = 1L << geometry.subclusterBits();
    boolean external = dataFile != file;
    long nextCluster = clusterEnd;
    long expectedHost = hostCluster;
    for (int i = l2Index + 1;
        runEnd == nextCluster && runEnd < wanted && i < table.entries();
        i++) {
      L2Entry e = table.entry(i);
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

  private L2Table loadL2(long l2Offset, long l1Index, long pos) throws IOException {
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
    return L2Table.decode(b, geometry);
  }

  public ImageFormatException corrupt(Mapping run, String what) {
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
}
