package org.jqcowfs.qcow2;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.Map;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.io.HostFile;
import org.jqcowfs.qcow2.format.Header;

/**
 * Reads refcounts (spec section 4) of one image, for checks that need them. Not cached beyond the
 * life of one instance; not thread-safe (each caller makes its own).
 */
final class Refcounts {
  /** {@code REFT_OFFSET_MASK}. */
  static final long REFT_OFFSET_MASK = 0xfffffffffffffe00L;

  /** {@code REFT_RESERVED_MASK}: bits 0-8. */
  static final long REFT_RESERVED_MASK = 0x1ffL;

  private final HostFile file;
  private final Header header;
  private final long[] table;
  private final Map<Long, ByteBuffer> blocks = new HashMap<>();

  Refcounts(HostFile file, Header header) throws IOException {
    this.file = file;
    this.header = header;
    int entries = (int) (header.refcountTableClusters() * header.clusterSize() / 8);
    table = Qcow2Opener.readWords(file, header.refcountTableOffset(), entries);
  }

  /** The refcount table's entries as stored. */
  long[] table() {
    return table;
  }

  /**
   * The refcount of host cluster {@code clusterIndex} (QEMU {@code qcow2_get_refcount}).
   *
   * @throws ImageFormatException on an unaligned or out-of-file refcount block
   */
  long refcount(long clusterIndex) throws IOException {
    int bits = header.refcountBits();
    long entriesPerBlock = header.clusterSize() * 8 / bits;
    long tableIndex = clusterIndex / entriesPerBlock;
    if (tableIndex >= table.length) {
      return 0;
    }
    long blockOffset = table[(int) tableIndex] & REFT_OFFSET_MASK;
    if (blockOffset == 0) {
      return 0;
    }
    if ((blockOffset & (header.clusterSize() - 1)) != 0) {
      throw new ImageFormatException(
          file.path(),
          "refcount table entry "
              + tableIndex
              + ": block offset "
              + hex(blockOffset)
              + " unaligned");
    }
    ByteBuffer block = blocks.get(blockOffset);
    if (block == null) {
      block = ByteBuffer.allocate((int) header.clusterSize());
      file.readFully(block, blockOffset);
      block.flip();
      blocks.put(blockOffset, block);
    }
    long index = clusterIndex % entriesPerBlock;
    long bitIndex = index * bits;
    return switch (bits) {
      case 64 -> block.getLong((int) (index * 8));
      case 32 -> Integer.toUnsignedLong(block.getInt((int) (index * 4)));
      case 16 -> block.getShort((int) (index * 2)) & 0xffffL;
      case 8 -> block.get((int) index) & 0xffL;
      default -> (block.get((int) (bitIndex / 8)) >>> (bitIndex % 8)) & ((1L << bits) - 1);
    };
  }
}
