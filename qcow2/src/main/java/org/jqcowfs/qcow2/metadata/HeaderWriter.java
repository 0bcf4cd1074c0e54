package org.jqcowfs.qcow2.metadata;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.storage.Storage;

/**
 * The one writer of the qcow2 header (QEMU {@code qcow2_update_header} and the field updates around
 * it): a whole new header, or one field in place, at the offsets the format names ({@link Header}).
 * Create, check, repair, the writer and the refcount table's growth all write through here; each
 * method syncs, so that the caller orders what comes after it on a durable header.
 */
public final class HeaderWriter {
  private HeaderWriter() {}

  /**
   * Writes {@code header} encoded ({@link Header#encode}: the header, its extensions and the
   * backing file name) at offset 0, the rest of the first cluster zeroed as QEMU's {@code
   * qcow2_update_header} writes it (no byte of a longer old name stays), and syncs.
   *
   * @throws IOException if the write or the sync fails
   */
  public static void write(Storage file, Header header) throws IOException {
    ByteBuffer cluster = ByteBuffer.allocate((int) header.clusterSize());
    cluster.put(header.encode()).clear();
    file.write(cluster, 0);
    file.flush();
  }

  /**
   * Refuses to go on unless the header on disk is exactly what {@link Header#encode} makes of
   * {@code onDisk}: an extension the encoder does not know would be lost if it were rewritten.
   *
   * @param instead what the user may do instead, for the message ("edit the bitmaps with qemu-img
   *     bitmap")
   * @throws ImageFormatException if the header holds more than {@code encode} writes
   * @throws IOException if the header cannot be read
   */
  public static void checkRewritable(Storage file, Header onDisk, String instead)
      throws IOException {
    ByteBuffer encoded;
    try {
      encoded = onDisk.encode();
    } catch (IllegalStateException e) {
      encoded = null;
    }
    ByteBuffer bytes = ByteBuffer.allocate(encoded == null ? 0 : encoded.remaining());
    file.readFully(bytes, 0);
    if (encoded == null || !bytes.flip().equals(encoded)) {
      throw new ImageFormatException(
          file.location(),
          "the header holds what jqcowfs does not rewrite (an extension it does not know); "
              + instead);
    }
  }

  /**
   * Sets {@code incompatible_features} to {@code bits} (the dirty and corrupt bits: {@code
   * qcow2_mark_clean}, {@code qcow2_mark_corrupt}), and syncs.
   *
   * @throws IOException if the write or the sync fails
   */
  public static void writeIncompatibleFeatures(Storage file, long bits) throws IOException {
    file.write(ByteBuffer.allocate(8).putLong(0, bits), Header.OFF_INCOMPATIBLE_FEATURES);
    file.flush();
  }

  /**
   * Sets {@code autoclear_features} to {@code bits} (a writer clears the bits it does not keep up
   * to date), and syncs.
   *
   * @throws IOException if the write or the sync fails
   */
  public static void writeAutoclearFeatures(Storage file, long bits) throws IOException {
    file.write(ByteBuffer.allocate(8).putLong(0, bits), Header.OFF_AUTOCLEAR_FEATURES);
    file.flush();
  }

  /**
   * Sets the virtual disk's {@code size} field to {@code bytes} (QEMU {@code qcow2_co_truncate}'s
   * last write), and syncs.
   *
   * @throws IOException if the write or the sync fails
   */
  public static void writeSize(Storage file, long bytes) throws IOException {
    file.write(ByteBuffer.allocate(8).putLong(0, bytes), Header.OFF_SIZE);
    file.flush();
  }

  /**
   * Points the header at an L1 table of {@code entries} entries at {@code offset} (both fields in
   * one write: QEMU {@code qcow2_grow_l1_table}), and syncs. The table must be durable before.
   *
   * @throws IOException if the write or the sync fails
   */
  public static void writeL1Table(Storage file, int entries, long offset) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(12).putInt(0, entries).putLong(4, offset);
    file.write(b, Header.OFF_L1_SIZE);
    file.flush();
  }

  /**
   * Points the header at a refcount table of {@code clusters} clusters at {@code offset} (both
   * fields in one write: QEMU {@code qcow2_refcount_area}, {@code rebuild_refcount_structure}), and
   * syncs. The table must be durable before this is called.
   *
   * @throws IOException if the write or the sync fails
   */
  public static void writeRefcountTable(Storage file, long offset, int clusters)
      throws IOException {
    ByteBuffer b = ByteBuffer.allocate(12).putLong(0, offset).putInt(8, clusters);
    file.write(b, Header.OFF_REFCOUNT_TABLE_OFFSET);
    file.flush();
  }

  /**
   * Points the header at a snapshot table of {@code count} entries at {@code offset} (0 for none;
   * both fields in one write: QEMU {@code qcow2_write_snapshots}), and syncs. The table must be
   * durable before this is called.
   *
   * @throws IOException if the write or the sync fails
   */
  public static void writeSnapshotTable(Storage file, int count, long offset) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(12).putInt(0, count).putLong(4, offset);
    file.write(b, Header.OFF_NB_SNAPSHOTS);
    file.flush();
  }

  /**
   * Sets {@code compatible_features} to {@code bits} (lazy refcounts: {@code qemu-img amend}), and
   * syncs.
   *
   * @throws IOException if the write or the sync fails
   */
  public static void writeCompatibleFeatures(Storage file, long bits) throws IOException {
    file.write(ByteBuffer.allocate(8).putLong(0, bits), Header.OFF_COMPATIBLE_FEATURES);
    file.flush();
  }

  /**
   * Points a v3 header at a refcount table of {@code clusters} clusters at {@code offset} whose
   * entries are {@code 1 << order} bits wide: one write from {@code refcount_table_offset} through
   * {@code refcount_order} (the fields between rewritten as they are on disk), synced. The table
   * and its blocks must be durable before.
   *
   * @throws IOException if a read, the write or the sync fails
   */
  public static void writeRefcountStructures(Storage file, long offset, int clusters, int order)
      throws IOException {
    int from = Header.OFF_REFCOUNT_TABLE_OFFSET;
    ByteBuffer b = ByteBuffer.allocate(Header.OFF_REFCOUNT_ORDER + 4 - from);
    file.readFully(b, from);
    b.putLong(0, offset)
        .putInt(Header.OFF_REFCOUNT_TABLE_CLUSTERS - from, clusters)
        .putInt(Header.OFF_REFCOUNT_ORDER - from, order);
    file.write(b.clear(), from);
    file.flush();
  }
}
