package org.jqcowfs.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.function.Consumer;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.RefcountBlock;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Storage;

/**
 * The fixes of {@code qemu-img check -r} for what one {@link RefcountCheck} found (QEMU {@code
 * qcow2_check_refcounts} with fix flags: {@code compare_refcounts}, {@code
 * rebuild_refcount_structure}, {@code check_oflag_copied}, {@code qcow2_mark_clean}), written to
 * the checked storage.
 */
final class RefcountRepair {
  private final RefcountCheck check;
  private final Storage file;
  private final Header header;
  private final Geometry geometry;
  private final Consumer<String> messages;

  RefcountRepair(RefcountCheck check) {
    this.check = check;
    this.file = check.file;
    this.header = check.header;
    this.geometry = check.geometry;
    this.messages = check.messages;
  }

  /**
   * Clears the dirty and corrupt bits of a v3 image that checks clean ({@code qcow2_mark_clean}).
   */
  static void clearBits(Storage file) throws IOException {
    Header h = MetadataIo.readHeader(file);
    long bits = Header.INCOMPAT_DIRTY | Header.INCOMPAT_CORRUPT;
    if (h.version() >= 3 && (h.incompatibleFeatures() & bits) != 0) {
      HeaderWriter.writeIncompatibleFeatures(file, h.incompatibleFeatures() & ~bits);
    }
  }

  /** Sets each leaked cluster's refcount to its references; returns how many. */
  long fixLeaks() throws IOException {
    Refcounts writable = new Refcounts(file, header);
    long fixed = 0;
    for (long i = 0; i < check.references.length; i++) {
      long onDisk;
      try {
        onDisk = writable.refcount(i);
      } catch (IOException e) {
        continue;
      }
      if (onDisk > check.references[(int) i]) {
        messages.accept(
            String.format(
                "Repairing cluster %d refcount=%d reference=%d",
                i, onDisk, check.references[(int) i]));
        writable.setExisting(i, check.references[(int) i]);
        fixed++;
      }
    }
    writable.writeDirty();
    return fixed;
  }

  /**
   * Writes a new refcount structure that counts the references found (the old table and blocks not
   * among them): blocks and table in clusters after the file's end and every reference, counting
   * themselves; synced; then the header names the new table (synced).
   */
  void rebuildRefcounts() throws IOException {
    for (long[] r : check.refcountStructure) {
      for (long k = r[0] >>> geometry.clusterBits();
          k <= (r[0] + r[1] - 1) >>> geometry.clusterBits() && k < check.references.length;
          k++) {
        check.references[(int) k] = Math.max(0, check.references[(int) k] - 1);
      }
    }
    long clusterSize = geometry.clusterSize();
    int bits = header.refcountBits();
    long perBlock = clusterSize * 8 / bits;
    long areaStart = Math.max(check.references.length, check.clusters(check.fileLength));
    long blocks = 1;
    long tableClusters;
    while (true) {
      tableClusters = (blocks * 8 + clusterSize - 1) / clusterSize;
      long needed = (areaStart + blocks + tableClusters + perBlock - 1) / perBlock;
      if (needed <= blocks) {
        break;
      }
      blocks = needed;
    }
    long areaEnd = areaStart + blocks + tableClusters;
    long max = bits == 64 ? Long.MAX_VALUE : (1L << bits) - 1;
    ByteBuffer table = ByteBuffer.allocate((int) (tableClusters * clusterSize));
    for (long k = 0; k < blocks; k++) {
      ByteBuffer block = ByteBuffer.allocate((int) clusterSize);
      for (long i = 0; i < perBlock; i++) {
        long c = k * perBlock + i;
        long count = c < check.references.length ? check.references[(int) c] : 0;
        count += c >= areaStart && c < areaEnd ? 1 : 0;
        RefcountBlock.put(block, bits, i, Math.min(count, max));
      }
      long at = (areaStart + k) << geometry.clusterBits();
      file.write(block, at);
      table.putLong((int) (k * 8), at);
    }
    long tableOffset = (areaStart + blocks) << geometry.clusterBits();
    file.write(table, tableOffset);
    file.flush();
    HeaderWriter.writeRefcountTable(file, tableOffset, (int) tableClusters);
    messages.accept(
        String.format(
            "Rebuilding refcount structure: %d refcount blocks and a %d-cluster table at %#x",
            blocks, tableClusters, tableOffset));
  }

  /**
   * Sets COPIED on the active L1 and L2 entries exactly where the refcount is 1 ({@code
   * check_oflag_copied} with fix); returns how many entries changed.
   */
  long fixCopiedFlags() throws IOException {
    Header now = MetadataIo.readHeader(file);
    Refcounts counts = new Refcounts(file, now);
    long[] l1 = check.readTable(now.l1TableOffset(), now.l1Size(), null);
    if (l1 == null) {
      return 0;
    }
    long fixed = 0;
    int entries = geometry.l2Entries();
    int words = geometry.extendedL2() ? 2 * entries : entries;
    boolean l1Changed = false;
    for (int i = 0; i < l1.length; i++) {
      long l2Offset = new L1Entry(l1[i]).l2Offset();
      if (l2Offset == 0 || geometry.offsetInCluster(l2Offset) != 0) {
        continue;
      }
      boolean copied = counts.refcount(l2Offset >>> geometry.clusterBits()) == 1;
      if (copied != new L1Entry(l1[i]).isCopied()) {
        l1[i] = copied ? l1[i] | L1Entry.COPIED : l1[i] & ~L1Entry.COPIED;
        l1Changed = true;
        fixed++;
      }
      long[] table = check.readTable(l2Offset, words, null);
      if (table == null) {
        continue;
      }
      boolean changed = false;
      for (int j = 0; j < entries; j++) {
        int w = geometry.extendedL2() ? 2 * j : j;
        long word = table[w];
        long offset = word & L2Entry.L2E_OFFSET_MASK;
        if ((word & L2Entry.QCOW_OFLAG_COMPRESSED) != 0 || offset == 0 || check.dataFile) {
          continue;
        }
        boolean one = counts.refcount(offset >>> geometry.clusterBits()) == 1;
        if (one != ((word & L2Entry.QCOW_OFLAG_COPIED) != 0)) {
          table[w] = one ? word | L2Entry.QCOW_OFLAG_COPIED : word & ~L2Entry.QCOW_OFLAG_COPIED;
          changed = true;
          fixed++;
        }
      }
      if (changed) {
        ByteBuffer b = ByteBuffer.allocate(words * 8);
        b.asLongBuffer().put(table);
        file.write(b, l2Offset);
      }
    }
    if (l1Changed) {
      file.flush();
      ByteBuffer b = ByteBuffer.allocate(l1.length * 8);
      b.asLongBuffer().put(l1);
      file.write(b, now.l1TableOffset());
    }
    return fixed;
  }
}
