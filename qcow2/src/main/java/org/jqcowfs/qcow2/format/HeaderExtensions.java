package org.jqcowfs.qcow2.format;

import static org.jqcowfs.image.ImageFormatException.hex;
import static org.jqcowfs.qcow2.format.Header.AUTOCLEAR_BITMAPS;
import static org.jqcowfs.qcow2.format.Header.EXT_BACKING_FORMAT;
import static org.jqcowfs.qcow2.format.Header.EXT_BITMAPS;
import static org.jqcowfs.qcow2.format.Header.EXT_CRYPTO;
import static org.jqcowfs.qcow2.format.Header.EXT_DATA_FILE;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.storage.Location;

/** The checks of QEMU's {@code qcow2_read_extensions} for each header extension it knows. */
final class HeaderExtensions {
  private HeaderExtensions() {}

  /** The LUKS area's bounds: one LUKS1 header, and QEMU's largest (8 slots of 512-bit keys). */
  static final long MIN_CRYPTO_BYTES = 592;

  static final long MAX_CRYPTO_BYTES = 16L << 20;

  static boolean isKnown(int type) {
    return type == EXT_BACKING_FORMAT
        || type == EXT_BITMAPS
        || type == EXT_CRYPTO
        || type == EXT_DATA_FILE;
  }

  /** Adds the feature name table's names to {@code names}, keyed by {@code type * 64 + bit}. */
  static void featureNames(byte[] data, Map<Integer, String> names) {
    for (int i = 0; i + 48 <= data.length; i += 48) {
      int ftype = data[i] & 0xff;
      int bit = data[i + 1] & 0xff;
      int end = i + 2;
      while (end < i + 48 && data[end] != 0) {
        end++;
      }
      if (ftype <= 2 && bit < 64) {
        names.put(
            ftype * 64 + bit,
            new String(data, i + 2, end - i - 2, StandardCharsets.US_ASCII)
                .replaceAll("[^\\x20-\\x7e]", "?"));
      }
    }
  }

  /**
   * The bitmaps extension's fields; when {@code autoclear} lacks the bitmaps bit, unchecked and
   * marked stale (a program without bitmap support wrote the image; QEMU ignores it).
   */
  static Header.Bitmaps bitmaps(
      Location p, byte[] data, long autoclear, long clusterSize, long tableLimit)
      throws ImageFormatException {
    if (data.length != 24) {
      throw new ImageFormatException(
          p, "bitmaps extension: length " + data.length + " (must be 24)");
    }
    ByteBuffer e = ByteBuffer.wrap(data);
    long nbBitmaps = e.getInt(0) & 0xffffffffL;
    long dirBytes = e.getLong(8);
    long dirOffset = e.getLong(16);
    if ((autoclear & AUTOCLEAR_BITMAPS) == 0) {
      return new Header.Bitmaps((int) nbBitmaps, dirBytes, dirOffset, false); // stale
    }
    // qcow2_read_extensions' checks, in its order
    if (nbBitmaps == 0 || nbBitmaps > 65535) {
      throw new ImageFormatException(
          p, "bitmaps extension: nb_bitmaps " + nbBitmaps + " outside 1..65535");
    }
    if (e.getInt(4) != 0) {
      throw new ImageFormatException(
          p, "bitmaps extension: reserved field " + hex(e.getInt(4)) + " is not zero");
    }
    if ((dirOffset & (clusterSize - 1)) != 0) {
      throw new ImageFormatException(
          p, "bitmaps extension: bitmap_directory_offset " + hex(dirOffset) + " not aligned");
    }
    if (dirBytes <= 0 || dirBytes > Header.MAX_BITMAP_DIRECTORY_BYTES) {
      throw new ImageFormatException(
          p,
          "bitmaps extension: bitmap_directory_size "
              + Long.toUnsignedString(dirBytes)
              + " outside 1.."
              + Header.MAX_BITMAP_DIRECTORY_BYTES);
    }
    if (dirOffset < 0 || dirOffset > tableLimit - dirBytes) {
      throw new ImageFormatException(
          p,
          "bitmaps extension: bitmap directory at "
              + hex(dirOffset)
              + " ("
              + dirBytes
              + " bytes) passes the end of the file");
    }
    return new Header.Bitmaps((int) nbBitmaps, dirBytes, dirOffset, true);
  }

  /** The full disk encryption header extension's LUKS area. */
  static Header.Crypto crypto(
      Location p,
      byte[] data,
      int cryptMethod,
      long clusterSize,
      long fileLength,
      boolean tablesMayPassEnd)
      throws ImageFormatException {
    if (cryptMethod != 2) {
      throw new ImageFormatException(
          p, "full disk encryption header extension in an image with crypt_method " + cryptMethod);
    }
    if (data.length != 16) {
      throw new ImageFormatException(
          p, "full disk encryption header extension: length " + data.length + ", not 16");
    }
    ByteBuffer e = ByteBuffer.wrap(data);
    long offset = e.getLong(0);
    long bytes = e.getLong(8);
    if (offset <= 0 || offset % clusterSize != 0) {
      throw new ImageFormatException(
          p, "encryption header offset " + hex(offset) + " is not a cluster boundary");
    }
    if (bytes < MIN_CRYPTO_BYTES || bytes > MAX_CRYPTO_BYTES) {
      throw new ImageFormatException(
          p,
          "encryption header length "
              + bytes
              + " outside "
              + MIN_CRYPTO_BYTES
              + ".."
              + MAX_CRYPTO_BYTES);
    }
    if (!tablesMayPassEnd && offset + bytes > fileLength) {
      throw new ImageFormatException(
          p,
          "encryption header at "
              + hex(offset)
              + " ("
              + bytes
              + " bytes) passes the end of the file");
    }
    return new Header.Crypto(offset, bytes);
  }

  static String printable(Location p, byte[] data, String what) throws ImageFormatException {
    for (byte x : data) {
      if (x < 0x21 || x > 0x7e) {
        throw new ImageFormatException(
            p, what + ": byte " + hex(x & 0xff) + " is not a printable ASCII character");
      }
    }
    return new String(data, StandardCharsets.US_ASCII);
  }
}
