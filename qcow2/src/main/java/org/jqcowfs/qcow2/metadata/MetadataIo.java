package org.jqcowfs.qcow2.metadata;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.storage.Storage;

/**
 * Metadata I/O: the header and the tables of 64-bit words (L1, refcount) read from an image's
 * storage, decoded by the format package. Writes of the header are {@link HeaderWriter}'s.
 */
public final class MetadataIo {
  private MetadataIo() {}

  /**
   * Reads and decodes the header of {@code file}: its first {@link Header#PREFIX_BYTES}, then the
   * first cluster that names.
   *
   * @throws ImageFormatException as {@link Header#decode}
   */
  public static Header readHeader(Storage file) throws IOException {
    return readHeader(file, false);
  }

  /** As {@link #readHeader(Storage)}; {@code tablesMayPassEnd} as {@link Header#decode}. */
  public static Header readHeader(Storage file, boolean tablesMayPassEnd) throws IOException {
    long fileLength = file.length();
    ByteBuffer prefix = ByteBuffer.allocate((int) Math.min(fileLength, Header.PREFIX_BYTES));
    file.readFully(prefix, 0);
    prefix.flip();
    int bytes = Header.bytesToDecode(prefix, fileLength);
    ByteBuffer first = prefix;
    if (bytes > prefix.limit()) {
      first = ByteBuffer.allocate(bytes);
      file.readFully(first, 0);
      first.flip();
    }
    return Header.decode(file.location(), first, fileLength, tablesMayPassEnd);
  }

  /**
   * The {@code words} big-endian 64-bit words at {@code offset}, zeros for those past the end of
   * the file (as QEMU's block layer reads there).
   */
  public static long[] readWordsZeroPastEnd(Storage file, long offset, int words)
      throws IOException {
    long inFile = Math.max(0, Math.min(words, (file.length() - offset) / 8));
    long[] table = readWords(file, offset, (int) inFile);
    return inFile == words ? table : java.util.Arrays.copyOf(table, words);
  }

  /** The {@code words} big-endian 64-bit words at {@code offset} (a table: L1, refcount). */
  public static long[] readWords(Storage file, long offset, int words) throws IOException {
    long[] out = new long[words];
    if (words > 0) {
      ByteBuffer b = ByteBuffer.allocate(words * 8);
      file.readFully(b, offset);
      b.flip();
      b.asLongBuffer().get(out);
    }
    return out;
  }
}
