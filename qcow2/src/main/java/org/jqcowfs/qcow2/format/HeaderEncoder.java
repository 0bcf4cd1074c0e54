package org.jqcowfs.qcow2.format;

import static org.jqcowfs.qcow2.format.Header.EXT_BACKING_FORMAT;
import static org.jqcowfs.qcow2.format.Header.EXT_BITMAPS;
import static org.jqcowfs.qcow2.format.Header.EXT_CRYPTO;
import static org.jqcowfs.qcow2.format.Header.EXT_DATA_FILE;
import static org.jqcowfs.qcow2.format.Header.EXT_END;
import static org.jqcowfs.qcow2.format.Header.EXT_FEATURE_TABLE;
import static org.jqcowfs.qcow2.format.Header.MAX_BACKING_NAME;
import static org.jqcowfs.qcow2.format.Header.MAX_DATA_FILE_NAME;
import static org.jqcowfs.qcow2.format.Header.OFF_AUTOCLEAR_FEATURES;
import static org.jqcowfs.qcow2.format.Header.OFF_BACKING_FILE_OFFSET;
import static org.jqcowfs.qcow2.format.Header.OFF_BACKING_FILE_SIZE;
import static org.jqcowfs.qcow2.format.Header.OFF_CLUSTER_BITS;
import static org.jqcowfs.qcow2.format.Header.OFF_COMPATIBLE_FEATURES;
import static org.jqcowfs.qcow2.format.Header.OFF_COMPRESSION_TYPE;
import static org.jqcowfs.qcow2.format.Header.OFF_CRYPT_METHOD;
import static org.jqcowfs.qcow2.format.Header.OFF_HEADER_LENGTH;
import static org.jqcowfs.qcow2.format.Header.OFF_INCOMPATIBLE_FEATURES;
import static org.jqcowfs.qcow2.format.Header.OFF_L1_SIZE;
import static org.jqcowfs.qcow2.format.Header.OFF_L1_TABLE_OFFSET;
import static org.jqcowfs.qcow2.format.Header.OFF_MAGIC;
import static org.jqcowfs.qcow2.format.Header.OFF_NB_SNAPSHOTS;
import static org.jqcowfs.qcow2.format.Header.OFF_REFCOUNT_ORDER;
import static org.jqcowfs.qcow2.format.Header.OFF_REFCOUNT_TABLE_CLUSTERS;
import static org.jqcowfs.qcow2.format.Header.OFF_REFCOUNT_TABLE_OFFSET;
import static org.jqcowfs.qcow2.format.Header.OFF_SIZE;
import static org.jqcowfs.qcow2.format.Header.OFF_SNAPSHOTS_OFFSET;
import static org.jqcowfs.qcow2.format.Header.OFF_VERSION;
import static org.jqcowfs.qcow2.format.Header.QCOW_MAGIC;
import static org.jqcowfs.qcow2.format.Header.V3_HEADER_BYTES;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Map;

/**
 * Lays a {@link Header} out as QEMU's {@code qcow2_update_header} writes it (spec sections 1-2).
 */
final class HeaderEncoder {
  private HeaderEncoder() {}

  static ByteBuffer encode(Header h) {
    ByteBuffer b = ByteBuffer.allocate((int) h.clusterSize());
    b.putInt(OFF_MAGIC, QCOW_MAGIC)
        .putInt(OFF_VERSION, h.version())
        .putInt(OFF_CLUSTER_BITS, h.clusterBits())
        .putLong(OFF_SIZE, h.size())
        .putInt(OFF_CRYPT_METHOD, h.cryptMethod())
        .putInt(OFF_L1_SIZE, h.l1Size())
        .putLong(OFF_L1_TABLE_OFFSET, h.l1TableOffset())
        .putLong(OFF_REFCOUNT_TABLE_OFFSET, h.refcountTableOffset())
        .putInt(OFF_REFCOUNT_TABLE_CLUSTERS, h.refcountTableClusters())
        .putInt(OFF_NB_SNAPSHOTS, h.nbSnapshots())
        .putLong(OFF_SNAPSHOTS_OFFSET, h.snapshotsOffset());
    if (h.version() >= 3) {
      b.putLong(OFF_INCOMPATIBLE_FEATURES, h.incompatibleFeatures())
          .putLong(OFF_COMPATIBLE_FEATURES, h.compatibleFeatures())
          .putLong(OFF_AUTOCLEAR_FEATURES, h.autoclearFeatures())
          .putInt(OFF_REFCOUNT_ORDER, h.refcountOrder())
          .putInt(OFF_HEADER_LENGTH, h.headerLength());
      if (h.headerLength() > V3_HEADER_BYTES) {
        b.put(OFF_COMPRESSION_TYPE, (byte) h.compressionType());
      }
    }
    b.position(h.headerLength());
    if (h.backingFormat() != null) {
      putExtension(b, EXT_BACKING_FORMAT, h.backingFormat().getBytes(StandardCharsets.US_ASCII));
    }
    if (h.dataFileName() != null) {
      byte[] name = h.dataFileName().getBytes(StandardCharsets.UTF_8);
      if (name.length > MAX_DATA_FILE_NAME) {
        throw new IllegalStateException("external data file name over " + MAX_DATA_FILE_NAME);
      }
      putExtension(b, EXT_DATA_FILE, name);
    }
    if (h.crypto() != null) {
      ByteBuffer ext = ByteBuffer.allocate(16);
      ext.putLong(0, h.crypto().offset()).putLong(8, h.crypto().length());
      putExtension(b, EXT_CRYPTO, ext.array());
    }
    if (!h.featureNames().isEmpty()) {
      ByteBuffer table = ByteBuffer.allocate(48 * h.featureNames().size());
      h.featureNames().entrySet().stream()
          .sorted(Map.Entry.comparingByKey())
          .forEach(
              e -> {
                int at = table.position();
                byte[] name = e.getValue().getBytes(StandardCharsets.US_ASCII);
                table.put((byte) (e.getKey() / 64)).put((byte) (e.getKey() % 64));
                table.put(name, 0, Math.min(name.length, 46)).position(at + 48);
              });
      putExtension(b, EXT_FEATURE_TABLE, table.array());
    }
    if (h.bitmaps() != null) {
      ByteBuffer ext = ByteBuffer.allocate(24);
      ext.putInt(0, h.bitmaps().count())
          .putLong(8, h.bitmaps().directoryBytes())
          .putLong(16, h.bitmaps().directoryOffset());
      putExtension(b, EXT_BITMAPS, ext.array());
    }
    requireRoom(b, 8);
    b.putInt(EXT_END).putInt(0);
    if (h.backingFileName() != null) {
      byte[] name = h.backingFileName().getBytes(StandardCharsets.UTF_8);
      if (name.length > MAX_BACKING_NAME) {
        throw new IllegalStateException("backing file name over " + MAX_BACKING_NAME + " bytes");
      }
      requireRoom(b, name.length);
      b.putLong(OFF_BACKING_FILE_OFFSET, b.position()).putInt(OFF_BACKING_FILE_SIZE, name.length);
      b.put(name);
    }
    return b.flip();
  }

  private static void putExtension(ByteBuffer b, int type, byte[] data) {
    int padded = (data.length + 7) & ~7;
    requireRoom(b, 8 + padded);
    b.putInt(type).putInt(data.length).put(data);
    b.position(b.position() + padded - data.length);
  }

  private static void requireRoom(ByteBuffer b, int bytes) {
    if (b.remaining() < bytes) {
      throw new IllegalStateException("the header does not fit in the first cluster");
    }
  }
}
