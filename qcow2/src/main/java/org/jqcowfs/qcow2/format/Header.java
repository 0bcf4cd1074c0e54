package org.jqcowfs.qcow2.format;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.storage.Location;

/**
 * The qcow2 header and its extensions (spec sections 1 and 2), parsed and range-checked. Every
 * field that later sizes a table or points into the file is checked here against QEMU's limits and
 * the file's length; a violation refuses the image with a message naming the field and value. The
 * checks follow QEMU's {@code qcow2_do_open} and {@code qcow2_read_extensions}.
 *
 * @param version 2 or 3
 * @param backingFileName the backing file name as stored, or null
 * @param clusterBits 9..21
 * @param size virtual disk size in bytes as stored
 * @param cryptMethod 0 (encrypted images are refused)
 * @param l1Size active L1 entries
 * @param l1TableOffset host offset of the active L1 table
 * @param refcountTableOffset host offset of the refcount table
 * @param refcountTableClusters refcount table length in clusters
 * @param nbSnapshots number of internal snapshots
 * @param snapshotsOffset host offset of the snapshot table
 * @param incompatibleFeatures incompatible feature bits (v3)
 * @param compatibleFeatures compatible feature bits (v3)
 * @param autoclearFeatures autoclear feature bits (v3)
 * @param refcountOrder log2 of refcount bits, 0..6
 * @param headerLength header bytes (72 for v2)
 * @param compressionType 0 deflate, 1 zstd
 * @param backingFormat backing format from extension 0xE2792ACA, or null
 * @param dataFileName external data file name from extension 0x44415441, or null
 * @param featureNames names from the feature name table, keyed by {@code type * 64 + bit}
 * @param bitmapsExtension whether a bitmaps extension is present (ignored for reading)
 */
public record Header(
    int version,
    String backingFileName,
    int clusterBits,
    long size,
    int cryptMethod,
    int l1Size,
    long l1TableOffset,
    long refcountTableOffset,
    int refcountTableClusters,
    int nbSnapshots,
    long snapshotsOffset,
    long incompatibleFeatures,
    long compatibleFeatures,
    long autoclearFeatures,
    int refcountOrder,
    int headerLength,
    int compressionType,
    String backingFormat,
    String dataFileName,
    Map<Integer, String> featureNames,
    boolean bitmapsExtension) {

  /** "QFI\xfb". */
  public static final int QCOW_MAGIC = 0x514649fb;

  public static final long INCOMPAT_DIRTY = 1L;
  public static final long INCOMPAT_CORRUPT = 1L << 1;
  public static final long INCOMPAT_DATA_FILE = 1L << 2;
  public static final long INCOMPAT_COMPRESSION = 1L << 3;
  public static final long INCOMPAT_EXTL2 = 1L << 4;
  static final long INCOMPAT_KNOWN = 0x1f;
  public static final long COMPAT_LAZY_REFCOUNTS = 1L;
  public static final long AUTOCLEAR_BITMAPS = 1L;
  public static final long AUTOCLEAR_DATA_FILE_RAW = 1L << 1;

  public static final int EXT_END = 0;
  public static final int EXT_BACKING_FORMAT = 0xe2792aca;
  public static final int EXT_FEATURE_TABLE = 0x6803f857;
  public static final int EXT_BITMAPS = 0x23852875;
  public static final int EXT_CRYPTO = 0x0537be77;
  public static final int EXT_DATA_FILE = 0x44415441;

  /** QEMU {@code QCOW_MAX_L1_SIZE}: 32 MiB. */
  public static final long MAX_L1_BYTES = 32L << 20;

  /** QEMU {@code QCOW_MAX_REFTABLE_SIZE}: 8 MiB. */
  public static final long MAX_REFTABLE_BYTES = 8L << 20;

  /** QEMU {@code QCOW_MAX_SNAPSHOTS}. */
  public static final int MAX_SNAPSHOTS = 65536;

  /** QEMU's cap on a backing file name, in bytes. */
  public static final int MAX_BACKING_NAME = 1023;

  /** Cap on an external data file name, in bytes. */
  public static final int MAX_DATA_FILE_NAME = 4096;

  /** Highest valid host offset + 1: 2^56. */
  public static final long MAX_HOST_OFFSET = 1L << 56;

  /** Header fields' byte offsets (spec section 1), big-endian. */
  public static final int OFF_MAGIC = 0;

  public static final int OFF_VERSION = 4;
  public static final int OFF_BACKING_FILE_OFFSET = 8;
  public static final int OFF_BACKING_FILE_SIZE = 16;
  public static final int OFF_CLUSTER_BITS = 20;
  public static final int OFF_SIZE = 24;
  public static final int OFF_CRYPT_METHOD = 32;
  public static final int OFF_L1_SIZE = 36;
  public static final int OFF_L1_TABLE_OFFSET = 40;
  public static final int OFF_REFCOUNT_TABLE_OFFSET = 48;
  public static final int OFF_REFCOUNT_TABLE_CLUSTERS = 56;
  public static final int OFF_NB_SNAPSHOTS = 60;
  public static final int OFF_SNAPSHOTS_OFFSET = 64;
  public static final int OFF_INCOMPATIBLE_FEATURES = 72;
  public static final int OFF_COMPATIBLE_FEATURES = 80;
  public static final int OFF_AUTOCLEAR_FEATURES = 88;
  public static final int OFF_REFCOUNT_ORDER = 96;
  public static final int OFF_HEADER_LENGTH = 100;
  public static final int OFF_COMPRESSION_TYPE = 104;

  /** A v2 header's bytes. */
  public static final int V2_HEADER_BYTES = 72;

  /** A v3 header's bytes without the compression type (QEMU writes 112 with it and padding). */
  public static final int V3_HEADER_BYTES = 104;

  /** The bytes of the file's start {@link #bytesToDecode} looks at. */
  public static final int PREFIX_BYTES = V3_HEADER_BYTES + 8;

  /** Cluster size in bytes. */
  public long clusterSize() {
    return 1L << clusterBits;
  }

  /** Refcount width in bits: {@code 1 << refcountOrder}. */
  public int refcountBits() {
    return 1 << refcountOrder;
  }

  /** Whether incompatible bit {@code bit} is set. */
  public boolean hasIncompatible(long bit) {
    return (incompatibleFeatures & bit) != 0;
  }

  /** The address geometry of this image. */
  public Geometry geometry() {
    return new Geometry(clusterBits, hasIncompatible(INCOMPAT_EXTL2));
  }

  /** The virtual size QEMU exposes: the stored size rounded down to 512 ({@code total_sectors}). */
  public long virtualSize() {
    return size & ~511L;
  }

  /**
   * How many bytes of the file's start {@link #decode} needs: its first cluster (or the whole file
   * when shorter), judged from the cluster_bits field of {@code prefix}, the file's first {@link
   * #PREFIX_BYTES} bytes (or all of a shorter file). An invalid cluster_bits needs no more than
   * {@code prefix}: {@link #decode} refuses it.
   */
  public static int bytesToDecode(ByteBuffer prefix, long fileLength) {
    if (prefix.limit() < OFF_CLUSTER_BITS + 4) {
      return prefix.limit();
    }
    int clusterBits = prefix.getInt(OFF_CLUSTER_BITS);
    if (clusterBits < 9 || clusterBits > 21) {
      return prefix.limit();
    }
    return (int) Math.min(1L << clusterBits, fileLength);
  }

  /**
   * Decodes and checks a header (QEMU {@code qcow2_do_open} and {@code qcow2_read_extensions}).
   *
   * @param p the image file, for messages
   * @param c the file's first {@link #bytesToDecode} bytes, from index 0 to its limit
   * @param fileLength the file's length in bytes, against which offsets are checked
   * @throws ImageFormatException if the file is not a qcow2 image, uses a refused feature (
   *     encryption, unknown incompatible bits), or has a field out of range
   */
  public static Header decode(Location p, ByteBuffer c, long fileLength)
      throws ImageFormatException {
    return decode(p, c, fileLength, false);
  }

  /**
   * As {@link #decode(Location, ByteBuffer, long)}; with {@code tablesMayPassEnd} the L1, refcount
   * and snapshot tables may run past the end of the file (they read as zeros there), as {@code
   * qcow2_do_open} lets them: for a check that reports what it finds, never for reading or writing,
   * which get a {@link TablePastEndException}.
   */
  public static Header decode(Location p, ByteBuffer c, long fileLength, boolean tablesMayPassEnd)
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
      case 1 ->
          throw new ImageFormatException(
              p, "encrypted image (crypt_method 1, AES) is not supported");
      case 2 ->
          throw new ImageFormatException(
              p, "encrypted image (crypt_method 2, LUKS) is not supported");
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
    boolean bitmaps = false;
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
      if (type != EXT_FEATURE_TABLE && !seen.add(type) && isKnown(type)) {
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
          backingFormat = printable(p, data, "backing format extension");
        }
        case EXT_FEATURE_TABLE -> {
          for (int i = 0; i + 48 <= data.length; i += 48) {
            int ftype = data[i] & 0xff;
            int bit = data[i + 1] & 0xff;
            int end = i + 2;
            while (end < i + 48 && data[end] != 0) {
              end++;
            }
            if (ftype <= 2 && bit < 64) {
              featureNames.put(
                  ftype * 64 + bit,
                  new String(data, i + 2, end - i - 2, StandardCharsets.US_ASCII)
                      .replaceAll("[^\\x20-\\x7e]", "?"));
            }
          }
        }
        case EXT_BITMAPS -> {
          if (len != 24) {
            throw new ImageFormatException(p, "bitmaps extension: length " + len + " (must be 24)");
          }
          bitmaps = true;
          if ((autoclear & AUTOCLEAR_BITMAPS) == 0) {
            break; // stale: a program without bitmap support wrote the image; QEMU ignores it
          }
          long nbBitmaps = ByteBuffer.wrap(data).getInt(0) & 0xffffffffL;
          if (nbBitmaps == 0 || nbBitmaps > 65535) {
            throw new ImageFormatException(
                p, "bitmaps extension: nb_bitmaps " + nbBitmaps + " outside 1..65535");
          }
        }
        case EXT_CRYPTO ->
            throw new ImageFormatException(
                p, "full disk encryption header extension in an image with crypt_method 0");
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
        bitmaps);
  }

  /**
   * Encodes this header as QEMU's {@code qcow2_update_header} lays it out: the header fields
   * ({@link #headerLength} bytes; 72 for v2), the backing format, external data file name and
   * feature name table extensions (each padded to 8 bytes), the end marker, then the backing file
   * name, which {@code backing_file_offset} and {@code backing_file_size} point at.
   *
   * @return the encoded bytes, position 0, at most one cluster
   * @throws IllegalStateException if the header has a bitmaps extension (whose directory this
   *     record does not keep), or the encoding would not fit in the first cluster or its names'
   *     limits
   */
  public ByteBuffer encode() {
    if (bitmapsExtension) {
      throw new IllegalStateException("the bitmaps extension is not kept and cannot be encoded");
    }
    ByteBuffer b = ByteBuffer.allocate((int) clusterSize());
    b.putInt(OFF_MAGIC, QCOW_MAGIC)
        .putInt(OFF_VERSION, version)
        .putInt(OFF_CLUSTER_BITS, clusterBits)
        .putLong(OFF_SIZE, size)
        .putInt(OFF_CRYPT_METHOD, cryptMethod)
        .putInt(OFF_L1_SIZE, l1Size)
        .putLong(OFF_L1_TABLE_OFFSET, l1TableOffset)
        .putLong(OFF_REFCOUNT_TABLE_OFFSET, refcountTableOffset)
        .putInt(OFF_REFCOUNT_TABLE_CLUSTERS, refcountTableClusters)
        .putInt(OFF_NB_SNAPSHOTS, nbSnapshots)
        .putLong(OFF_SNAPSHOTS_OFFSET, snapshotsOffset);
    if (version >= 3) {
      b.putLong(OFF_INCOMPATIBLE_FEATURES, incompatibleFeatures)
          .putLong(OFF_COMPATIBLE_FEATURES, compatibleFeatures)
          .putLong(OFF_AUTOCLEAR_FEATURES, autoclearFeatures)
          .putInt(OFF_REFCOUNT_ORDER, refcountOrder)
          .putInt(OFF_HEADER_LENGTH, headerLength);
      if (headerLength > V3_HEADER_BYTES) {
        b.put(OFF_COMPRESSION_TYPE, (byte) compressionType);
      }
    }
    b.position(headerLength);
    if (backingFormat != null) {
      putExtension(b, EXT_BACKING_FORMAT, backingFormat.getBytes(StandardCharsets.US_ASCII));
    }
    if (dataFileName != null) {
      byte[] name = dataFileName.getBytes(StandardCharsets.UTF_8);
      if (name.length > MAX_DATA_FILE_NAME) {
        throw new IllegalStateException("external data file name over " + MAX_DATA_FILE_NAME);
      }
      putExtension(b, EXT_DATA_FILE, name);
    }
    if (!featureNames.isEmpty()) {
      ByteBuffer table = ByteBuffer.allocate(48 * featureNames.size());
      featureNames.entrySet().stream()
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
    requireRoom(b, 8);
    b.putInt(EXT_END).putInt(0);
    if (backingFileName != null) {
      byte[] name = backingFileName.getBytes(StandardCharsets.UTF_8);
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

  private static boolean isKnown(int type) {
    return type == EXT_BACKING_FORMAT
        || type == EXT_BITMAPS
        || type == EXT_CRYPTO
        || type == EXT_DATA_FILE;
  }

  private static String printable(Location p, byte[] data, String what)
      throws ImageFormatException {
    for (byte x : data) {
      if (x < 0x21 || x > 0x7e) {
        throw new ImageFormatException(
            p, what + ": byte " + hex(x & 0xff) + " is not a printable ASCII character");
      }
    }
    return new String(data, StandardCharsets.US_ASCII);
  }

  /**
   * Checks that a table of {@code bytes} bytes at {@code offset} is cluster aligned and lies inside
   * the file.
   */
  public static void checkTable(
      Location p, String field, long offset, long bytes, long clusterSize, long fileLength)
      throws ImageFormatException {
    if (bytes == 0) {
      return;
    }
    if (offset <= 0 || (offset & (clusterSize - 1)) != 0) {
      throw new ImageFormatException(
          p, field + " " + hex(offset) + " is not a non-zero multiple of the cluster size");
    }
    if (offset >= MAX_HOST_OFFSET || bytes > MAX_HOST_OFFSET - offset) {
      throw new ImageFormatException(
          p, field + " " + hex(offset) + ": table of " + bytes + " bytes passes 2^56");
    }
    if (offset > fileLength || bytes > fileLength - offset) {
      throw new TablePastEndException(
          p,
          field
              + " "
              + hex(offset)
              + ": table of "
              + bytes
              + " bytes runs past the end of the file ("
              + hex(fileLength)
              + ")");
    }
  }
}
