package org.jqcowfs.qcow2;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.BitmapDirectory;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.BitmapTables;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.qcow2.metadata.SnapshotTable;
import org.jqcowfs.storage.Storage;

/**
 * One walk of {@link Qcow2Check}: the references of every cluster the metadata names, counted and
 * compared with the stored refcounts (QEMU {@code calculate_refcounts}, {@code check_refblocks},
 * {@code compare_refcounts}, {@code check_oflag_copied}, without their fixes). What it counts and
 * finds stays readable for {@link RefcountRepair}.
 */
final class RefcountCheck {
  final Storage file;
  final Header header;
  final Geometry geometry;
  final boolean dataFile;
  final long fileLength;
  final Consumer<String> messages;
  private final Refcounts stored;
  private final long refcountMax;

  /** References per host cluster, counted by the walk. */
  int[] references;

  /** The refcount table and blocks as {offset, bytes}: not counted by a rebuilt structure. */
  final List<long[]> refcountStructure = new ArrayList<>();

  private long corruptions;
  private long leaks;
  private long checkErrors;
  private long allocated;
  private long fragmented;
  private long compressed;

  /** Refcounts below their references. */
  long refcountErrors;

  /** Of those, referenced clusters at refcount 0. */
  long unrefcounted;

  /** Damaged refcount table entries and blocks. */
  long structureErrors;

  /** COPIED flags that disagree with the refcount. */
  long copiedErrors;

  RefcountCheck(Storage file, Header header, Consumer<String> messages) throws IOException {
    this.file = file;
    this.header = header;
    this.geometry = header.geometry();
    this.dataFile = header.dataFileName() != null;
    this.fileLength = file.length();
    this.messages = messages;
    this.stored = new Refcounts(file, header);
    stored.readPastEndAsZeros();
    this.refcountMax =
        header.refcountBits() >= 32 ? Integer.MAX_VALUE : (1L << header.refcountBits()) - 1;
    this.references = new int[(int) Math.min(Integer.MAX_VALUE - 8, clusters(fileLength))];
  }

  /** Counts every reference and compares the counts with the stored refcounts. */
  Qcow2Check.Result run(SnapshotTable.Table table) throws IOException {
    List<Snapshot> snapshots = table.snapshots();
    for (String c : table.corruptions()) {
      report("%s", c);
      corruptions++;
    }
    long clusterSize = geometry.clusterSize();
    reference(0, clusterSize);
    checkL1(header.l1TableOffset(), header.l1Size(), true);
    for (Snapshot s : snapshots) {
      if (geometry.offsetInCluster(s.l1TableOffset()) != 0) {
        report(
            "ERROR snapshot %s (%s) l1_offset=%#x: L1 table is not cluster aligned; snapshot"
                + " table entry corrupted",
            s.id(), s.name(), s.l1TableOffset());
        corruptions++;
        continue;
      }
      if (Integer.toUnsignedLong(s.l1Size()) * 8 > Header.MAX_L1_BYTES) {
        report(
            "ERROR snapshot %s (%s) l1_size=%#x: L1 table is too large; snapshot table entry"
                + " corrupted",
            s.id(), s.name(), s.l1Size());
        corruptions++;
        continue;
      }
      checkL1(s.l1TableOffset(), s.l1Size(), false);
    }
    reference(header.snapshotsOffset(), table.bytes());
    if (header.crypto() != null) { // the LUKS area (qcow2_check_refcounts' crypto_header)
      reference(header.crypto().offset(), header.crypto().length());
    }
    reference(header.refcountTableOffset(), (long) header.refcountTableClusters() * clusterSize);
    refcountStructure.add(
        new long[] {header.refcountTableOffset(), header.refcountTableClusters() * clusterSize});
    checkBitmaps();
    long before = corruptions;
    checkRefcountBlocks();
    structureErrors = corruptions - before;
    long highest = compareRefcounts();
    CopiedFlagCheck copied = new CopiedFlagCheck(this, stored);
    copied.run();
    copiedErrors = copied.errors;
    corruptions += copied.errors;
    checkErrors += copied.checkErrors;
    return new Qcow2Check.Result(
        corruptions,
        leaks,
        checkErrors,
        (highest + 1) * clusterSize,
        clusters(header.virtualSize()),
        allocated,
        fragmented,
        compressed);
  }

  long clusters(long bytes) {
    return (bytes + geometry.clusterSize() - 1) >>> geometry.clusterBits();
  }

  /** QEMU {@code qcow2_inc_refcounts_imrt}: one more reference to each cluster of the range. */
  private void reference(long offset, long bytes) {
    if (bytes <= 0) {
      return;
    }
    if (offset + bytes - fileLength >= geometry.clusterSize()) {
      report(
          "ERROR: counting reference for region exceeding the end of the file by one cluster or"
              + " more: offset %#x size %#x",
          offset, bytes);
      corruptions++;
      return;
    }
    long first = offset >>> geometry.clusterBits();
    long last = (offset + bytes - 1) >>> geometry.clusterBits();
    for (long k = first; k <= last; k++) {
      if (k >= references.length) {
        references = Arrays.copyOf(references, (int) Math.max(k + 1, references.length * 2L));
      }
      int count = references[(int) k];
      if (count >= refcountMax) {
        report("ERROR: overflow cluster offset=%#x", k << geometry.clusterBits());
        corruptions++;
        continue;
      }
      references[(int) k] = count + 1;
    }
  }

  /**
   * QEMU {@code qcow2_check_bitmaps_refcounts}: the directory, each bitmap table and each bitmap
   * data cluster are referenced.
   *
   * @throws ImageFormatException if the directory or a table cannot be loaded (QEMU cannot open the
   *     image: {@code qcow2_load_dirty_bitmaps})
   */
  private void checkBitmaps() throws IOException {
    List<BitmapDirectory.Bitmap> bitmaps = BitmapTables.directory(file, header);
    if (bitmaps.isEmpty()) {
      return;
    }
    reference(header.bitmaps().directoryOffset(), header.bitmaps().directoryBytes());
    int clusterBytes = (int) geometry.clusterSize();
    for (BitmapDirectory.Bitmap b : bitmaps) {
      reference(b.tableOffset(), b.tableBytes());
      long[] table;
      try {
        table = BitmapTables.table(file, b);
      } catch (ImageFormatException e) {
        corruptions++; // bitmap_table_load failed: QEMU stops counting here
        return;
      }
      for (long entry : table) {
        if (!BitmapDirectory.validTableEntry(entry, clusterBytes)) {
          // QEMU's open loads every bitmap table (bitmap_table_load) and fails on this entry
          throw new ImageFormatException(
              file.location(),
              "Could not read bitmap_table table from image for bitmap '"
                  + b.name()
                  + "': Invalid argument");
        }
        if (BitmapDirectory.dataOffset(entry) != 0) {
          reference(BitmapDirectory.dataOffset(entry), clusterBytes);
        }
      }
    }
  }

  /** QEMU {@code check_refcounts_l1}. */
  private void checkL1(long l1Offset, int l1Size, boolean active) throws IOException {
    if (l1Size == 0) {
      return;
    }
    reference(l1Offset, l1Size * 8L);
    long[] l1 = readTable(l1Offset, l1Size, "check_refcounts_l1");
    if (l1 == null) {
      return;
    }
    for (long word : l1) {
      if (word == 0) {
        continue;
      }
      if ((word & L1Entry.L1E_RESERVED_MASK) != 0) {
        report("ERROR found L1 entry with reserved bits set: %x", word);
        corruptions++;
      }
      long l2Offset = new L1Entry(word).l2Offset();
      reference(l2Offset, geometry.clusterSize());
      if (geometry.offsetInCluster(l2Offset) != 0) {
        report("ERROR l2_offset=%x: Table is not cluster aligned; L1 entry corrupted", l2Offset);
        corruptions++;
      }
      checkL2(l2Offset, active);
    }
  }

  /** QEMU {@code check_refcounts_l2}. */
  private void checkL2(long l2Offset, boolean active) throws IOException {
    int entries = geometry.l2Entries();
    int words = geometry.extendedL2() ? 2 * entries : entries;
    long[] table = readTable(l2Offset, words, "check_refcounts_l2");
    if (table == null) {
      return;
    }
    long nextContiguous = 0;
    for (int i = 0; i < entries; i++) {
      L2Entry e =
          geometry.extendedL2()
              ? new L2Entry(table[2 * i], table[2 * i + 1])
              : new L2Entry(table[i], 0);
      long word = e.word();
      long bitmap = e.bitmap();
      if (e.isCompressed()) {
        if ((word & L2Entry.QCOW_OFLAG_COPIED) != 0) {
          report(
              "ERROR: coffset=%#x: copied flag must never be set for compressed clusters",
              e.compressedDescriptor(geometry.clusterBits()).hostOffset());
          corruptions++;
        }
        if (dataFile) {
          report("ERROR compressed cluster %d with data file, entry=%#x", i, word);
          corruptions++;
          continue;
        }
        if (bitmap != 0) {
          report(
              "ERROR compressed cluster %d with non-zero subcluster allocation bitmap, entry=%#x",
              i, word);
          corruptions++;
          continue;
        }
        L2Entry.CompressedDescriptor d = e.compressedDescriptor(geometry.clusterBits());
        reference(d.hostOffset(), d.maxLength());
        if (active) {
          allocated++;
          compressed++;
          fragmented++;
        }
        continue;
      }
      if ((word & L2Entry.L2E_STD_RESERVED_MASK) != 0) {
        report("ERROR found l2 entry with reserved bits set: %x", word);
        corruptions++;
      }
      long offset = word & L2Entry.L2E_OFFSET_MASK;
      boolean zeroFlag = !geometry.extendedL2() && (word & L2Entry.QCOW_OFLAG_ZERO) != 0;
      boolean hasOffset = offset != 0 || (dataFile && (word & L2Entry.QCOW_OFLAG_COPIED) != 0);
      if (!hasOffset) {
        if (!zeroFlag && (bitmap & L2Entry.QCOW_L2_BITMAP_ALL_ALLOC) != 0) {
          report(
              "ERROR: %s cluster has non-zero subcluster allocation bitmap",
              active ? "active" : "inactive");
          corruptions++;
        }
        continue;
      }
      if (((bitmap >>> 32) & bitmap) != 0) {
        report(
            "ERROR offset=%x: Allocated cluster has corrupted subcluster allocation bitmap",
            offset);
        corruptions++;
      }
      if (geometry.offsetInCluster(offset) != 0) {
        corruptions++;
        boolean containsData =
            geometry.extendedL2()
                ? (bitmap & L2Entry.QCOW_L2_BITMAP_ALL_ALLOC) != 0
                : (word & L2Entry.QCOW_OFLAG_ZERO) == 0;
        report(
            containsData
                ? "ERROR offset=%x: Data cluster is not properly aligned; L2 entry corrupted."
                : "ERROR offset=%x: Preallocated cluster is not properly aligned; L2 entry"
                    + " corrupted.",
            offset);
      }
      if (active) {
        allocated++;
        if (nextContiguous != 0 && offset != nextContiguous) {
          fragmented++;
        }
        nextContiguous = offset + geometry.clusterSize();
      }
      if (!dataFile) {
        reference(offset, geometry.clusterSize());
      }
    }
  }

  /** QEMU {@code check_refblocks}, without repairs. */
  private void checkRefcountBlocks() {
    long[] table = stored.table();
    for (int i = 0; i < table.length; i++) {
      long offset = table[i] & Refcounts.REFT_OFFSET_MASK;
      if ((table[i] & Refcounts.REFT_RESERVED_MASK) != 0) {
        report("ERROR refcount table entry %d has reserved bits set", i);
        corruptions++;
        continue;
      }
      if (geometry.offsetInCluster(offset) != 0) {
        report("ERROR refcount block %d is not cluster aligned; refcount table entry corrupted", i);
        corruptions++;
        continue;
      }
      long cluster = offset >>> geometry.clusterBits();
      if (cluster >= references.length) {
        report("ERROR refcount block %d is outside image", i);
        corruptions++;
        continue;
      }
      if (offset != 0) {
        reference(offset, geometry.clusterSize());
        refcountStructure.add(new long[] {offset, geometry.clusterSize()});
        int count = cluster < references.length ? references[(int) cluster] : 0;
        if (count != 1) {
          report("ERROR refcount block %d refcount=%d", i, count);
          corruptions++;
        }
      }
    }
  }

  /** QEMU {@code compare_refcounts}, without repairs; returns the highest cluster in use. */
  private long compareRefcounts() {
    long highest = 0;
    for (long i = 0; i < references.length; i++) {
      long onDisk;
      try {
        onDisk = stored.refcount(i);
      } catch (IOException e) {
        report("Can't get refcount for cluster %d: %s", i, e.getMessage());
        checkErrors++;
        continue;
      }
      long counted = references[(int) i];
      if (onDisk > 0 || counted > 0) {
        highest = i;
      }
      if (onDisk != counted) {
        report(
            "%s cluster %d refcount=%d reference=%d",
            onDisk < counted ? "ERROR" : "Leaked", i, onDisk, counted);
        if (onDisk < counted) {
          corruptions++;
          refcountErrors++;
          unrefcounted += onDisk == 0 ? 1 : 0;
        } else {
          leaks++;
        }
      }
    }
    return highest;
  }

  /**
   * The table of {@code words} 64-bit words at {@code offset}, what lies past the end of the file
   * reading as zeros as QEMU's block layer reads it; null, with a check error counted when {@code
   * function} is given, when the offset is outside any file.
   */
  long[] readTable(long offset, int words, String function) throws IOException {
    if (offset < 0 || offset >= Header.MAX_HOST_OFFSET) {
      if (function != null) {
        report("ERROR: I/O error in %s", function);
        checkErrors++;
      }
      return null;
    }
    return MetadataIo.readWordsZeroPastEnd(file, offset, words);
  }

  void report(String format, Object... args) {
    messages.accept(String.format(format, args));
  }

  @Override
  public String toString() {
    return "RefcountCheck(" + file.location() + ", " + hex(fileLength) + " bytes)";
  }
}
