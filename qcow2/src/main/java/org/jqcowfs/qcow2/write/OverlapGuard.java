package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.util.List;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.MetadataRanges;
import org.jqcowfs.qcow2.metadata.MetadataSink;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Where metadata lives, and the refusal of a write that would land on it (QEMU {@code
 * qcow2_check_metadata_overlap} with {@code qcow2_pre_write_overlap_check}): such a write marks the
 * image corrupt ({@code qcow2_signal_corruption}), in memory and in the header, and every later
 * write is refused. Guarded by the writer's lock, except {@link #checkWritable}'s read.
 */
final class OverlapGuard {
  private static final Logger LOG = LoggerFactory.getLogger(Qcow2Writer.class);

  private final Location path;
  private final Storage file;
  private final Header header;
  private final boolean v3;

  /** Metadata but the active L2 tables. */
  private final MetadataRanges metadata = new MetadataRanges();

  /** The active L2 tables. */
  private final MetadataRanges l2Tables = new MetadataRanges();

  private volatile String corrupt;

  /**
   * Records where the metadata of the image is: header, active L1 table, refcount table and blocks,
   * snapshot table and the snapshots' L1 tables, the active L2 tables; and takes the refcount
   * blocks and tables {@code refcounts} adds from now on.
   *
   * @param snapshotTableBytes the snapshot table's bytes in the file
   */
  OverlapGuard(
      Storage file,
      Header header,
      ClusterMapper mapper,
      Refcounts refcounts,
      List<Snapshot> snapshots,
      long snapshotTableBytes) {
    this.path = file.location();
    this.file = file;
    this.header = header;
    this.v3 = header.version() >= 3;
    long cs = header.geometry().clusterSize();
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
        new MetadataSink() {
          @Override
          public void added(long hostOffset, long bytes) throws IOException {
            check(hostOffset, bytes, "a refcount block or table");
            metadata.add(hostOffset, bytes, "a refcount block or table");
          }

          @Override
          public void removed(long hostOffset, long bytes) {
            metadata.remove(hostOffset);
          }
        });
  }

  /** A new active L2 table at {@code hostOffset}. */
  void addL2Table(long hostOffset, long bytes) {
    l2Tables.add(hostOffset, bytes, "an L2 table");
  }

  /** The active L2 table at {@code hostOffset} is one no longer. */
  void removeL2Table(long hostOffset) {
    l2Tables.remove(hostOffset);
  }

  /** The image's cluster size, bytes. */
  long clusterBytes() {
    return header.geometry().clusterSize();
  }

  /** Records {@code [hostOffset, hostOffset + bytes)} as holding {@code what} (bitmaps). */
  void addMetadata(long hostOffset, long bytes, String what) {
    metadata.add(hostOffset, bytes, what);
  }

  /** Forgets the metadata range {@link #addMetadata} recorded at {@code hostOffset}. */
  void removeMetadata(long hostOffset) {
    metadata.remove(hostOffset);
  }

  /**
   * What metadata {@code [hostOffset, hostOffset + bytes)} overlaps, or null: a question, unlike
   * {@link #check}, which marks the image corrupt.
   */
  String overlap(long hostOffset, long bytes) {
    String hit = l2Tables.overlap(hostOffset, bytes);
    return hit != null ? hit : metadata.overlap(hostOffset, bytes);
  }

  void checkWritable() throws IOException {
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
  void check(long hostOffset, long bytes, Object why) throws IOException {
    checkOverlap(l2Tables, hostOffset, bytes, why);
    checkOverlap(metadata, hostOffset, bytes, why);
  }

  /**
   * As {@link #check}, against the metadata but the active L2 tables: for a write of an L2 table
   * itself.
   */
  void checkNotOnOtherMetadata(long hostOffset, long bytes, Object why) throws IOException {
    checkOverlap(metadata, hostOffset, bytes, why);
  }

  /** As {@link #check(long, long, Object)}, against {@code ranges} only. */
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
      HeaderWriter.writeIncompatibleFeatures(
          file, header.incompatibleFeatures() | Header.INCOMPAT_CORRUPT);
    }
    throw new IOException(path + ": " + what + "; the image is now marked corrupt");
  }
}
