package org.jqcowfs.qcow2.format;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.nio.ByteBuffer;
import java.util.Map;
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
 * @param bitmaps the bitmaps extension, or null when there is none
 * @param crypto the full disk encryption header extension (crypt_method 2), or null
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
    Bitmaps bitmaps,
    Crypto crypto) {

  /**
   * The full disk encryption header extension (spec: 0x0537BE77): where the LUKS header and key
   * material lie in the image file.
   *
   * @param offset host offset in bytes, cluster aligned
   * @param length bytes of the LUKS area
   */
  public record Crypto(long offset, long length) {}

  /**
   * The bitmaps extension (spec: "Bitmaps extension", header extension 0x23852875).
   *
   * @param count nb_bitmaps: entries in the bitmap directory, 1..65535 when consistent
   * @param directoryBytes bitmap_directory_size, at most {@link #MAX_BITMAP_DIRECTORY_BYTES}
   * @param directoryOffset bitmap_directory_offset, a host offset, cluster aligned
   * @param consistent whether autoclear bit 0 is set; without it the bitmaps are stale (a program
   *     without bitmap support wrote the image) and ignored, as QEMU ignores them; their fields are
   *     then as stored, unchecked
   */
  public record Bitmaps(int count, long directoryBytes, long directoryOffset, boolean consistent) {}

  /** QEMU's QCOW2_MAX_BITMAP_DIRECTORY_SIZE: 1024 bytes for each of 65535 bitmaps. */
  public static final long MAX_BITMAP_DIRECTORY_BYTES = 1024L * 65535;

  /**
   * This header with {@code autoclear_features} {@code autoclear} and the bitmaps extension {@code
   * ext} (null: none), as QEMU's {@code update_ext_header_and_dir} sets them.
   */
  public Header withBitmaps(long autoclear, Bitmaps ext) {
    return new Header(
        version,
        backingFileName,
        clusterBits,
        size,
        cryptMethod,
        l1Size,
        l1TableOffset,
        refcountTableOffset,
        refcountTableClusters,
        nbSnapshots,
        snapshotsOffset,
        incompatibleFeatures,
        compatibleFeatures,
        autoclear,
        refcountOrder,
        headerLength,
        compressionType,
        backingFormat,
        dataFileName,
        featureNames,
        ext,
        crypto);
  }

  /**
   * This header naming {@code name} as the backing file with format {@code format} (both null: no
   * backing file), as QEMU's {@code qcow2_change_backing_file} sets them.
   */
  public Header withBacking(String name, String format) {
    return new Header(
        version,
        name,
        clusterBits,
        size,
        cryptMethod,
        l1Size,
        l1TableOffset,
        refcountTableOffset,
        refcountTableClusters,
        nbSnapshots,
        snapshotsOffset,
        incompatibleFeatures,
        compatibleFeatures,
        autoclearFeatures,
        refcountOrder,
        headerLength,
        compressionType,
        format,
        dataFileName,
        featureNames,
        bitmaps,
        crypto);
  }

  /**
   * This header with {@code crypt_method} 2 (LUKS) and the full disk encryption extension naming
   * {@code area}, as {@code qcow2_set_up_encryption} sets them.
   */
  public Header withCrypto(Crypto area) {
    return new Header(
        version,
        backingFileName,
        clusterBits,
        size,
        2,
        l1Size,
        l1TableOffset,
        refcountTableOffset,
        refcountTableClusters,
        nbSnapshots,
        snapshotsOffset,
        incompatibleFeatures,
        compatibleFeatures,
        autoclearFeatures,
        refcountOrder,
        headerLength,
        compressionType,
        backingFormat,
        dataFileName,
        featureNames,
        bitmaps,
        area);
  }

  /** QEMU's feature name table (qcow2_update_header), keyed by {@code type * 64 + bit}. */
  public static final Map<Integer, String> FEATURE_NAMES =
      Map.of(
          0, "dirty bit",
          1, "corrupt bit",
          2, "external data file",
          3, "compression type",
          4, "extended L2 entries",
          64, "lazy refcounts",
          128, "bitmaps",
          129, "raw external data");

  /**
   * This header as QEMU's {@code qcow2_update_header} writes it for {@code newVersion} ({@code
   * qcow2_upgrade}, {@code qcow2_downgrade}): a v3 header of 112 bytes with the feature name table
   * (clusters over 4 KiB, as qemu-img writes it), or a v2 one of 72 bytes with none; the feature
   * bits, refcount order and compression type as given.
   */
  public Header withFormat(
      int newVersion,
      long incompatible,
      long compatible,
      long autoclear,
      int newRefcountOrder,
      int newCompressionType) {
    boolean v3 = newVersion >= 3;
    return new Header(
        newVersion,
        backingFileName,
        clusterBits,
        size,
        cryptMethod,
        l1Size,
        l1TableOffset,
        refcountTableOffset,
        refcountTableClusters,
        nbSnapshots,
        snapshotsOffset,
        v3 ? incompatible : 0,
        v3 ? compatible : 0,
        v3 ? autoclear : 0,
        newRefcountOrder,
        v3 ? V3_HEADER_BYTES + 8 : V2_HEADER_BYTES,
        newCompressionType,
        backingFormat,
        dataFileName,
        v3 && clusterSize() > 4096 ? FEATURE_NAMES : Map.of(),
        bitmaps,
        crypto);
  }

  /** Whether the header has a bitmaps extension, consistent or not. */
  public boolean bitmapsExtension() {
    return bitmaps != null;
  }

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
    return HeaderDecoder.decode(p, c, fileLength, tablesMayPassEnd);
  }

  /**
   * Encodes this header as QEMU's {@code qcow2_update_header} lays it out: the header fields
   * ({@link #headerLength} bytes; 72 for v2), the backing format, external data file name, feature
   * name table and bitmaps extensions (each padded to 8 bytes), the end marker, then the backing
   * file name, which {@code backing_file_offset} and {@code backing_file_size} point at.
   *
   * @return the encoded bytes, position 0, at most one cluster
   * @throws IllegalStateException if the encoding would not fit in the first cluster or its names'
   *     limits
   */
  public ByteBuffer encode() {
    return HeaderEncoder.encode(this);
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
