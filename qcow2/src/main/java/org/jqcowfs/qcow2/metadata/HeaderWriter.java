package org.jqcowfs.qcow2.metadata;

import java.io.IOException;
import java.nio.ByteBuffer;
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
   * backing file name) at offset 0, and syncs.
   *
   * @throws IOException if the write or the sync fails
   */
  public static void write(Storage file, Header header) throws IOException {
    file.write(header.encode(), 0);
    file.flush();
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
}
