package org.jqcowfs.qcow2.metadata;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.RefcountBlock;
import org.jqcowfs.storage.Storage;

/**
 * The refcount table and blocks in the file, for {@link Refcounts}: a block read as its table entry
 * names it, and the table grown into a new area (QEMU {@code qcow2_refcount_area}).
 */
final class RefcountStructure {
  private RefcountStructure() {}

  /** A grown refcount table: its entries, where it lies, and the new blocks after the old range. */
  record Grown(long[] table, long tableOffset, List<ByteBuffer> blocks) {}

  /**
   * The refcount block that table entry {@code t} ({@code word}) names, read whole; with {@code
   * zerosPastEnd} what lies past the end of the file reads as zeros (a check's view, as QEMU reads
   * it).
   *
   * @throws ImageFormatException if the entry is unaligned or has reserved bits, or (without {@code
   *     zerosPastEnd}) the block lies past the end of the file
   */
  static ByteBuffer readBlock(
      Storage file, long t, long word, long clusterSize, boolean zerosPastEnd) throws IOException {
    long offset = word & Refcounts.REFT_OFFSET_MASK;
    if ((word & Refcounts.REFT_RESERVED_MASK) != 0 || (offset & (clusterSize - 1)) != 0) {
      throw new ImageFormatException(
          file.location(),
          "refcount table entry " + t + ": " + hex(word) + " unaligned or reserved");
    }
    if (offset > file.length() - clusterSize && zerosPastEnd) {
      ByteBuffer data = ByteBuffer.allocate((int) clusterSize); // QEMU reads zeros there
      data.limit((int) Math.max(0, Math.min(clusterSize, file.length() - offset)));
      if (data.hasRemaining()) {
        file.readFully(data, offset);
      }
      return data.clear();
    }
    if (offset > file.length() - clusterSize) {
      throw new ImageFormatException(
          file.location(),
          "refcount table entry "
              + t
              + ": block offset "
              + hex(offset)
              + " past the end of the file ("
              + hex(file.length())
              + ")");
    }
    ByteBuffer data = ByteBuffer.allocate((int) clusterSize);
    file.readFully(data, offset);
    return data.clear();
  }

  /**
   * Grows the refcount table {@code table} to cover table index {@code t} (QEMU {@code
   * qcow2_refcount_area}): the new table and the refcount blocks that count it go right after the
   * clusters the old table covers, counting themselves; they are written and synced, then the
   * header names the new table (synced). The old table's clusters are the caller's to free.
   *
   * @throws IOException if the table would outgrow QEMU's 8 MiB, or a write or sync fails
   */
  static Grown grow(
      Storage file,
      long[] table,
      long t,
      long entriesPerBlock,
      int clusterBits,
      int bits,
      MetadataSink sink)
      throws IOException {
    long clusterSize = 1L << clusterBits;
    int oldEntries = table.length;
    long perCluster = clusterSize / 8;
    long areaStart = (long) oldEntries * entriesPerBlock; // first cluster no block covers
    int newBlocks = 1;
    long newEntries;
    long tableClusters;
    while (true) {
      long wanted = Math.max(t + 1, Math.max(oldEntries + newBlocks, oldEntries * 3L / 2));
      tableClusters = (wanted + perCluster - 1) / perCluster;
      newEntries = tableClusters * perCluster;
      if (newBlocks + tableClusters <= newBlocks * entriesPerBlock) {
        break;
      }
      newBlocks++;
    }
    if (tableClusters * clusterSize > Header.MAX_REFTABLE_BYTES) {
      throw new IOException(
          file.location() + ": the refcount table would outgrow QEMU's limit of 8 MiB");
    }
    long newTableOffset = (areaStart + newBlocks) << clusterBits;
    long[] grown = Arrays.copyOf(table, (int) newEntries);
    long areaClusters = newBlocks + tableClusters;
    List<ByteBuffer> made = new ArrayList<>();
    for (int k = 0; k < newBlocks; k++) {
      ByteBuffer data = ByteBuffer.allocate((int) clusterSize);
      long first = (oldEntries + (long) k) * entriesPerBlock;
      for (long c = first; c < Math.min(first + entriesPerBlock, areaStart + areaClusters); c++) {
        RefcountBlock.put(data, bits, c - first, 1);
      }
      grown[oldEntries + k] = (areaStart + k) << clusterBits;
      made.add(data);
    }
    if (sink != null) {
      for (int k = 0; k < newBlocks; k++) {
        sink.added(grown[oldEntries + k], clusterSize);
      }
      sink.added(newTableOffset, tableClusters << clusterBits);
    }
    for (int k = 0; k < newBlocks; k++) {
      file.write(made.get(k).duplicate(), grown[oldEntries + k]);
    }
    ByteBuffer encoded = ByteBuffer.allocate((int) (newEntries * 8));
    encoded.asLongBuffer().put(grown);
    file.write(encoded, newTableOffset);
    file.flush();
    HeaderWriter.writeRefcountTable(file, newTableOffset, (int) tableClusters);
    return new Grown(grown, newTableOffset, made);
  }
}
