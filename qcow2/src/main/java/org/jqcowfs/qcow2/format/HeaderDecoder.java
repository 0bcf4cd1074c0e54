package org.jqcowfs.qcow2.format;

import static org.jqcowfs.image.ImageFormatException.hex;
import static org.jqcowfs.qcow2.format.Header.AUTOCLEAR_DATA_FILE_RAW;
import static org.jqcowfs.qcow2.format.Header.EXT_BACKING_FORMAT;
import static org.jqcowfs.qcow2.format.Header.EXT_BITMAPS;
import static org.jqcowfs.qcow2.format.Header.EXT_CRYPTO;
import static org.jqcowfs.qcow2.format.Header.EXT_DATA_FILE;
import static org.jqcowfs.qcow2.format.Header.EXT_END;
import static org.jqcowfs.qcow2.format.Header.EXT_FEATURE_TABLE;
import static org.jqcowfs.qcow2.format.Header.INCOMPAT_COMPRESSION;
import static org.jqcowfs.qcow2.format.Header.INCOMPAT_DATA_FILE;
import static org.jqcowfs.qcow2.format.Header.INCOMPAT_EXTL2;
import static org.jqcowfs.qcow2.format.Header.INCOMPAT_KNOWN;
import static org.jqcowfs.qcow2.format.Header.MAX_BACKING_NAME;
import static org.jqcowfs.qcow2.format.Header.MAX_DATA_FILE_NAME;
import static org.jqcowfs.qcow2.format.Header.MAX_HOST_OFFSET;
import static org.jqcowfs.qcow2.format.Header.MAX_L1_BYTES;
import static org.jqcowfs.qcow2.format.Header.MAX_REFTABLE_BYTES;
import static org.jqcowfs.qcow2.format.Header.MAX_SNAPSHOTS;
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
import static org.jqcowfs.qcow2.format.Header.V2_HEADER_BYTES;
import static org.jqcowfs.qcow2.format.Header.V3_HEADER_BYTES;
import static org.jqcowfs.qcow2.format.Header.checkTable;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.storage.Location;

/**
 * {@link Header#decode}'s work: the header fields, the extensions in the first cluster, the feature
 * bits, the tables and the backing file name, each checked as QEMU's {@code qcow2_do_open} and
 * {@code qcow2_read_extensions} check them.
 */
final class HeaderDecoder {
  private HeaderDecoder() {}

  /** As {@link Header#decode(Location, ByteBuffer, long, boolean)}. */
  static Header decode(Location p, ByteBuffer c, long fileLength, boolean tablesMayPassEnd)
      throws ImageFormatException {
    long tableLimit = tablesMayPassEnd ? MAX_HOST_OFFSET : fileLength;
    if (fileLength < V2_HEADER_BYTES || c.limit() < V2_HEADER_BYTES) {
      throw new ImageFormatException(
          p, "file is " + fileLength + " bytes, shorter than a qcow2 header (72)");
    }
    ByteBuffer b = c;
    int magic = b.getInt(OFF_MAGIC);
    if (magic != QCOW_MAGIC) {
      throw new ImageFormatException(
          p, "not a qcow2 image (magic " + hex(magic & 0xffffffffL) + ")");
    }
    int version = b.getInt(OFF_VERSION);
    if (version != 2 && version != 3) {
      throw new ImageFormatException(
          p, "version " + version + " is not supported (qcow2 versions 2 and 3 are)");
    }
    int clusterBits = b.getInt(OFF_CLUSTER_BITS);
    if (clusterBits < 9 || clusterBits > 21) {
      throw new ImageFormatException(p, "cluster_bits " + clusterBits + " outside 9..21");
    }
    long clusterSize = 1L << clusterBits;
    int cryptMethod = b.getInt(OFF_CRYPT_METHOD);
    switch (cryptMethod) {
      case 0 -> {}
      case 1 -> {} // legacy AES: read-only, the key from the passphrase (no extension)
      case 2 -> {} // LUKS: its extension is required below
      default ->
          throw new ImageFormatException(
              p, "crypt_method " + Integer.toUnsignedString(cryptMethod) + " is invalid");
    }
    long incompatible = 0;
    long compatible = 0;
    long autoclear = 0;
    int refcountOrder = 4;
    int headerLength = V2_HEADER_BYTES;
    int compressionType = 0;
    if (version == 3) {
      if (fileLength < V3_HEADER_BYTES) {
        throw new ImageFormatException(
            p, "file is " + fileLength + " bytes, shorter than a qcow2 v3 header (104)");
      }
      incompatible = b.getLong(OFF_INCOMPATIBLE_FEATURES);
      compatible = b.getLong(OFF_COMPATIBLE_FEATURES);
      autoclear = b.getLong(OFF_AUTOCLEAR_FEATURES);
      refcountOrder = b.getInt(OFF_REFCOUNT_ORDER);
      headerLength = b.getInt(OFF_HEADER_LENGTH);
      if (headerLength < V3_HEADER_BYTES
          || headerLength % 8 != 0
          || headerLength > clusterSize
          || headerLength > fileLength) {
        throw new ImageFormatException(
            p,
            "header_length "
                + Integer.toUnsignedString(headerLength)
                + " invalid (must be >= 104, a multiple of 8, within the first cluster and the"
                + " file)");
      }
      if (refcountOrder < 0 || refcountOrder > 6) {
        throw new ImageFormatException(p, "refcount_order " + refcountOrder + " outside 0..6");
      }
      if (headerLength > V3_HEADER_BYTES) {
        compressionType = b.get(OFF_COMPRESSION_TYPE) & 0xff;
      }
    }

    // The first cluster holds the header, its extensions and the backing file name.
    int firstClusterBytes = (int) Math.min(clusterSize, fileLength);
    if (c.limit() < firstClusterBytes) {
      throw new IllegalArgumentException(
          "decode needs " + firstClusterBytes + " bytes, given " + c.limit());
    }

    String backingFormat = null;
    String dataFileName = null;
    Header.Bitmaps bitmaps = null;
    Header.Crypto crypto = null;
    Map<Integer, String> featureNames = new HashMap<>();
    Set<Integer> seen = new HashSet<>();
    long pos = headerLength;
    while (true) {
      if (pos + 8 > firstClusterBytes) {
        if (pos + 8 > clusterSize) {
          break; // the extension area ends with the first cluster (QEMU: end = cluster_size)
        }
        throw new ImageFormatException(
            p, "header extension at " + hex(pos) + " runs past the end of the file");
      }
      int type = c.getInt((int) pos);
      long len = Integer.toUnsignedLong(c.getInt((int) pos + 4));
      if (type == EXT_END) {
        break;
      }
      long dataStart = pos + 8;
      if (len > firstClusterBytes - dataStart) {
        throw new ImageFormatException(
            p,
            "header extension "
                + hex(Integer.toUnsignedLong(type))
                + " at "
                + hex(pos)
                + ": length "
                + len
                + " crosses the end of the first cluster ("
                + firstClusterBytes
                + " bytes)");
      }
      if (type != EXT_FEATURE_TABLE && !seen.add(type) && HeaderExtensions.isKnown(type)) {
        throw new ImageFormatException(
            p, "header extension " + hex(Integer.toUnsignedLong(type)) + " appears twice");
      }
      byte[] data = new byte[(int) len];
      c.get((int) dataStart, data);
      switch (type) {
        case EXT_BACKING_FORMAT -> {
          if (len == 0 || len > 15) {
            throw new ImageFormatException(
                p, "backing format extension: length " + len + " outside 1..15");
          }
          backingFormat = HeaderExtensions.printable(p, data, "backing format extension");
        }
        case EXT_FEATURE_TABLE -> HeaderExtensions.featureNames(data, featureNames);
        case EXT_BITMAPS ->
            bitmaps = HeaderExtensions.bitmaps(p, data, autoclear, clusterSize, tableLimit);
        case EXT_CRYPTO ->
            crypto =
                HeaderExtensions.crypto(
                    p, data, cryptMethod, clusterSize, fileLength, tablesMayPassEnd);
        case EXT_DATA_FILE -> {
          if (len == 0 || len > MAX_DATA_FILE_NAME) {
            throw new ImageFormatException(
                p,
                "external data file name extension: length "
                    + len
                    + " outside 1.."
                    + MAX_DATA_FILE_NAME);
          }
          dataFileName = new String(data, StandardCharsets.UTF_8);
        }
        default -> {} // unknown extensions are safely ignorable
      }
      pos = dataStart + ((len + 7) & ~7L);
    }

    long unknown = incompatible & ~INCOMPAT_KNOWN;
    if (unknown != 0) {
      int bit = Long.numberOfTrailingZeros(unknown);
      String name = featureNames.get(bit);
      throw new ImageFormatException(
          p,
          "unknown incompatible feature bit "
              + bit
              + (name != null ? " (" + name + ")" : "")
              + " set in incompatible_features "
              + hex(incompatible));
    }
    if ((incompatible & INCOMPAT_COMPRESSION) != 0) {
      if (compressionType != 1) {
        throw new ImageFormatException(
            p,
            "compression_type "
                + compressionType
                + " with incompatible bit 3 (compression type) set; only 1 (zstd) is known");
      }
    } else if (compressionType != 0) {
      throw new ImageFormatException(
          p, "compression_type " + compressionType + " without incompatible bit 3 set");
    }
    if ((incompatible & INCOMPAT_EXTL2) != 0 && clusterBits < 14) {
      throw new ImageFormatException(
          p,
          "cluster_bits " + clusterBits + " too small for extended L2 entries (bit 4 needs >= 14)");
    }
    boolean hasDataFile = (incompatible & INCOMPAT_DATA_FILE) != 0;
    if (hasDataFile && dataFileName == null) {
      throw new ImageFormatException(
          p, "incompatible bit 2 (external data file) is set but no data file name is stored");
    }
    if (!hasDataFile && dataFileName != null) {
      throw new ImageFormatException(
          p, "external data file name stored but incompatible bit 2 (external data file) is clear");
    }
    if ((autoclear & AUTOCLEAR_DATA_FILE_RAW) != 0 && !hasDataFile) {
      throw new ImageFormatException(
          p, "autoclear bit 1 (data file raw) is set without an external data file");
    }

    long size = b.getLong(OFF_SIZE);
    if (size < 0) {
      throw new ImageFormatException(p, "size " + Long.toUnsignedString(size) + " too large");
    }
    Geometry g = new Geometry(clusterBits, (incompatible & INCOMPAT_EXTL2) != 0);
    long l1Size = Integer.toUnsignedLong(b.getInt(OFF_L1_SIZE));
    long l1TableOffset = b.getLong(OFF_L1_TABLE_OFFSET);
    if (l1Size * 8 > MAX_L1_BYTES) {
      throw new ImageFormatException(
          p, "l1_size " + l1Size + " too large (L1 table over " + MAX_L1_BYTES + " bytes)");
    }
    long l1Needed = g.l1EntriesFor(size);
    if (l1Needed > MAX_L1_BYTES / 8) {
      // QEMU qcow2_do_open: "Image is too big" (the L1 table it needs would pass QCOW_MAX_L1_SIZE)
      throw new ImageFormatException(
          p,
          "size "
              + size
              + " too large: with cluster_bits "
              + clusterBits
              + " it needs "
              + l1Needed
              + " L1 entries, over the limit of "
              + MAX_L1_BYTES / 8);
    }
    if (l1Needed > l1Size) {
      throw new ImageFormatException(
          p,
          "l1_size "
              + l1Size
              + " too small for size "
              + size
              + " (needs "
              + l1Needed
              + " entries)");
    }
    checkTable(p, "l1_table_offset", l1TableOffset, l1Size * 8, clusterSize, tableLimit);

    long refcountTableOffset = b.getLong(OFF_REFCOUNT_TABLE_OFFSET);
    long refcountTableClusters = Integer.toUnsignedLong(b.getInt(OFF_REFCOUNT_TABLE_CLUSTERS));
    if (refcountTableClusters * clusterSize > MAX_REFTABLE_BYTES) {
      throw new ImageFormatException(
          p,
          "refcount_table_clusters "
              + refcountTableClusters
              + " too large (refcount table over "
              + MAX_REFTABLE_BYTES
              + " bytes)");
    }
    checkTable(
        p,
        "refcount_table_offset",
        refcountTableOffset,
        refcountTableClusters * clusterSize,
        clusterSize,
        tableLimit);

    long nbSnapshots = Integer.toUnsignedLong(b.getInt(OFF_NB_SNAPSHOTS));
    long snapshotsOffset = b.getLong(OFF_SNAPSHOTS_OFFSET);
    if (nbSnapshots > MAX_SNAPSHOTS) {
      throw new ImageFormatException(
          p, "nb_snapshots " + nbSnapshots + " over the limit of " + MAX_SNAPSHOTS);
    }
    if (nbSnapshots > 0) {
      checkTable(p, "snapshots_offset", snapshotsOffset, 40, clusterSize, tableLimit);
    }

    String backingFileName = null;
    long backingOffset = b.getLong(OFF_BACKING_FILE_OFFSET);
    long backingSize = Integer.toUnsignedLong(b.getInt(OFF_BACKING_FILE_SIZE));
    if (backingOffset != 0) {
      if (hasDataFile && (autoclear & AUTOCLEAR_DATA_FILE_RAW) != 0) {
        throw new ImageFormatException(
            p, "backing file with a raw external data file (autoclear bit 1)");
      }
      if (backingSize > MAX_BACKING_NAME) {
        throw new ImageFormatException(
            p, "backing_file_size " + backingSize + " over " + MAX_BACKING_NAME);
      }
      if (backingOffset < 0
          || backingOffset > firstClusterBytes
          || backingSize > firstClusterBytes - backingOffset) {
        throw new ImageFormatException(
            p,
            "backing file name at backing_file_offset "
                + hex(backingOffset)
                + " (+"
                + backingSize
                + " bytes) lies outside the first cluster and the file");
      }
      if (backingSize > 0) {
        byte[] name = new byte[(int) backingSize];
        c.get((int) backingOffset, name);
        backingFileName = new String(name, StandardCharsets.UTF_8);
        if (backingFileName.indexOf('\0') >= 0) {
          throw new ImageFormatException(p, "backing file name contains a NUL byte");
        }
      }
    }
    if (cryptMethod == 2 && crypto == null) {
      throw new ImageFormatException(
          p, "crypt_method 2 (LUKS) without its full disk encryption header extension");
    }
    return new Header(
        version,
        backingFileName,
        clusterBits,
        size,
        cryptMethod,
        (int) l1Size,
        l1TableOffset,
        refcountTableOffset,
        (int) refcountTableClusters,
        (int) nbSnapshots,
        snapshotsOffset,
        incompatible,
        compatible,
        autoclear,
        refcountOrder,
        headerLength,
        compressionType,
        backingFormat,
        dataFileName,
        Map.copyOf(featureNames),
        bitmaps,
        crypto);
  }
}
