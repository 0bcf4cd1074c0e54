package org.jqcowfs.qcow2;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.function.Consumer;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.ImageLock;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.qcow2.metadata.SnapshotTable;
import org.jqcowfs.storage.Storage;

/**
 * The consistency check of one qcow2 file, as {@code qemu-img check} does it without repairs (QEMU
 * {@code qcow2_check_refcounts}: {@code calculate_refcounts}, {@code check_refblocks}, {@code
 * compare_refcounts}, {@code check_oflag_copied}). Every cluster the metadata references (header,
 * L1 and L2 tables, data and compressed clusters of the active image and of every snapshot, the
 * snapshot table, the refcount table and blocks) is counted, and the counts are compared with the
 * stored refcounts: a refcount below its references is a corruption, above them a leak. Messages
 * are QEMU's, one per finding.
 */
public final class Qcow2Check {
  private final Storage file;
  private final Header header;
  private final Geometry geometry;
  private final boolean dataFile;
  private final long fileLength;
  private final Consumer<String> messages;
  private final Refcounts stored;
  private final long refcountMax;
  private int[] references;
  private long corruptions;
  private long leaks;
  private long checkErrors;
  private long allocated;
  private long fragmented;
  private long compressed;
  private long refcountErrors;
  private long unrefcounted;
  private long structureErrors;
  private long copiedErrors;
  private final List<long[]> refcountStructure = new java.util.ArrayList<>();

  /**
   * What the check found (QEMU's {@code BdrvCheckResult}).
   *
   * @param corruptions refcounts below their references, and broken metadata
   * @param leaks refcounts above their references
   * @param checkErrors clusters whose metadata could not be read
   * @param imageEndOffset one past the last cluster in use or referenced, in bytes
   * @param totalClusters guest clusters of the virtual disk
   * @param allocatedClusters data and compressed clusters of the active image
   * @param fragmentedClusters of those, the ones not right after the previous one in the file
   * @param compressedClusters compressed clusters of the active image
   */
  public record Result(
      long corruptions,
      long leaks,
      long checkErrors,
      long imageEndOffset,
      long totalClusters,
      long allocatedClusters,
      long fragmentedClusters,
      long compressedClusters) {

    /** {@code qemu-img check}'s exit status: 1 check errors, 2 corruptions, 3 leaks, else 0. */
    public int exitStatus() {
      return checkErrors > 0 ? 1 : corruptions > 0 ? 2 : leaks > 0 ? 3 : 0;
    }
  }

  private Qcow2Check(Storage file, Header header, boolean dataFile, Consumer<String> messages)
      throws IOException {
    this.file = file;
    this.header = header;
    this.geometry = header.geometry();
    this.dataFile = dataFile;
    this.fileLength = file.length();
    this.messages = messages;
    this.stored = new Refcounts(file, header);
    stored.readPastEndAsZeros();
    this.refcountMax =
        header.refcountBits() >= 32 ? Integer.MAX_VALUE : (1L << header.refcountBits()) - 1;
    this.references = new int[(int) Math.min(Integer.MAX_VALUE - 8, clusters(fileLength))];
  }

  /**
   * Checks the qcow2 image at {@code path}; each finding goes to {@code messages} as qemu-img words
   * it.
   *
   * @throws ImageFormatException if the image cannot be opened (qemu-img check cannot open it
   *     either), or has a bitmaps extension (not checked yet)
   * @throws IOException if the file cannot be read
   */
  public static Result check(Path path, Consumer<String> messages) throws IOException {
    try (Storage file = PosixStorage.open(path, HostFileOptions.DEFAULT)) {
      Header h = MetadataIo.readHeader(file, true);
      checkBitmaps(path, h, messages);
      SnapshotTable.Table snapshots = SnapshotTable.readTable(file, h, true);
      return new Qcow2Check(file, h, h.dataFileName() != null, messages).run(snapshots);
    }
  }

  /**
   * Refuses an image with valid persistent bitmaps (their clusters are not counted yet); a stale
   * bitmaps extension (autoclear bit clear) is ignored with QEMU's warning ({@code
   * qcow2_read_extensions}).
   */
  private static void checkBitmaps(Path path, Header h, Consumer<String> messages)
      throws ImageFormatException {
    if (!h.bitmapsExtension()) {
      return;
    }
    if ((h.autoclearFeatures() & Header.AUTOCLEAR_BITMAPS) != 0) {
      throw new ImageFormatException(path, "images with persistent bitmaps are not checked yet");
    }
    messages.accept(
        h.version() < 3
            ? "warning: This qcow2 v2 image contains bitmaps, but they may have been modified by a"
                + " program without persistent bitmap support; so now they must all be considered"
                + " inconsistent"
            : "warning: a program lacking bitmap support modified this file, so all bitmaps are now"
                + " considered inconsistent");
    messages.accept("Some clusters may be leaked, run 'check -r' on the image file to fix.");
  }

  /**
   * What {@link #repair} did.
   *
   * @param before the check before the repair
   * @param leaksFixed leaked clusters given their right refcount
   * @param corruptionsFixed refcounts below their references and COPIED flags put right
   * @param after the check of the repaired image
   */
  public record Repair(Result before, long leaksFixed, long corruptionsFixed, Result after) {}

  /**
   * Checks the image at {@code path} and repairs what {@code qemu-img check -r leaks} (or, with
   * {@code all}, {@code -r all}) repairs, then checks it again (QEMU {@code qcow2_check_refcounts}
   * with fix flags). Leaks alone are mended in place; with {@code all}, a refcount below its
   * references or a damaged refcount structure has the whole structure rebuilt after the end of the
   * file, written and synced before the header names it ({@code rebuild_refcount_structure}), then
   * the COPIED flags of the active tables are set from the new refcounts, and the dirty and corrupt
   * bits are cleared once the image checks clean. The image is locked as a writer.
   *
   * @throws ImageFormatException if the image cannot be opened or checked
   * @throws IOException if the file cannot be read, written or locked
   */
  public static Repair repair(Path path, boolean all, Consumer<String> messages)
      throws IOException {
    try (ImageLock lock = ImageLock.acquireForWrite(path)) {
      return repairLocked(path, all, messages);
    }
  }

  /** As {@link #repair}, for a caller that holds the writer's lock on {@code path}. */
  static Repair repairLocked(Path path, boolean all, Consumer<String> messages) throws IOException {
    Result before;
    long leaksFixed = 0;
    long corruptionsFixed = 0;
    try (Storage file = PosixStorage.open(path, HostFileOptions.DEFAULT.withWritable(true))) {
      Header h = MetadataIo.readHeader(file);
      checkBitmaps(path, h, messages);
      SnapshotTable.Table snapshots = SnapshotTable.readTable(file, h);
      Qcow2Check c = new Qcow2Check(file, h, h.dataFileName() != null, messages);
      before = c.run(snapshots);
      // QEMU rebuilds for a referenced cluster at refcount 0 or a bad block; -r leaks cannot
      boolean rebuild = c.unrefcounted > 0 || c.structureErrors > 0;
      if (rebuild && !all) {
        messages.accept("ERROR need to rebuild refcount structures");
        throw new IOException(
            path + ": check failed: the refcount structure needs a rebuild (-r all)");
      }
      if (all && (rebuild || c.refcountErrors > 0)) {
        c.rebuildRefcounts();
        leaksFixed = before.leaks();
        corruptionsFixed = c.refcountErrors + c.structureErrors;
      } else if (before.leaks() > 0) {
        leaksFixed = c.fixLeaks();
      }
      // -r leaks mends COPIED flags too when nothing else is wrong (check_oflag_copied)
      boolean onlyCopied = before.corruptions() == c.copiedErrors && before.checkErrors() == 0;
      if (c.copiedErrors > 0 && (all || onlyCopied)) {
        corruptionsFixed += c.fixCopiedFlags();
      }
      file.flush();
    }
    if (leaksFixed + corruptionsFixed > 0) {
      messages.accept("The following inconsistencies were found and repaired:");
      messages.accept("");
      messages.accept("    " + leaksFixed + " leaked clusters");
      messages.accept("    " + corruptionsFixed + " corruptions");
      messages.accept("");
      messages.accept("Double checking the fixed image now...");
    }
    Result after = check(path, messages);
    if (all && after.corruptions() == 0 && after.checkErrors() == 0) {
      clearBits(path);
    }
    return new Repair(before, leaksFixed, corruptionsFixed, after);
  }

  /**
   * Clears the dirty and corrupt bits of a v3 image that checks clean ({@code qcow2_mark_clean}).
   */
  private static void clearBits(Path path) throws IOException {
    try (Storage file = PosixStorage.open(path, HostFileOptions.DEFAULT.withWritable(true))) {
      Header h = MetadataIo.readHeader(file);
      long bits = Header.INCOMPAT_DIRTY | Header.INCOMPAT_CORRUPT;
      if (h.version() >= 3 && (h.incompatibleFeatures() & bits) != 0) {
        HeaderWriter.writeIncompatibleFeatures(file, h.incompatibleFeatures() & ~bits);
      }
    }
  }

  /** Sets each leaked cluster's refcount to its references; returns how many. */
  private long fixLeaks() throws IOException {
    Refcounts writable = new Refcounts(file, header);
    long fixed = 0;
    for (long i = 0; i < references.length; i++) {
      long onDisk;
      try {
        onDisk = writable.refcount(i);
      } catch (IOException e) {
        continue;
      }
      if (onDisk > references[(int) i]) {
        messages.accept(
            String.format(
                "Repairing cluster %d refcount=%d reference=%d", i, onDisk, references[(int) i]));
        writable.setExisting(i, references[(int) i]);
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
  private void rebuildRefcounts() throws IOException {
    for (long[] r : refcountStructure) {
      for (long k = r[0] >>> geometry.clusterBits();
          k <= (r[0] + r[1] - 1) >>> geometry.clusterBits() && k < references.length;
          k++) {
        references[(int) k] = Math.max(0, references[(int) k] - 1);
      }
    }
    long clusterSize = geometry.clusterSize();
    int bits = header.refcountBits();
    long perBlock = clusterSize * 8 / bits;
    long areaStart = Math.max(references.length, clusters(fileLength));
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
        long count = c < references.length ? references[(int) c] : 0;
        count += c >= areaStart && c < areaEnd ? 1 : 0;
        Refcounts.put(block, bits, i, Math.min(count, max));
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
  private long fixCopiedFlags() throws IOException {
    Header now = MetadataIo.readHeader(file);
    Refcounts counts = new Refcounts(file, now);
    long[] l1 = readTable(now.l1TableOffset(), now.l1Size(), null);
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
      long[] table = readTable(l2Offset, words, null);
      if (table == null) {
        continue;
      }
      boolean changed = false;
      for (int j = 0; j < entries; j++) {
        int w = geometry.extendedL2() ? 2 * j : j;
        long word = table[w];
        long offset = word & L2Entry.L2E_OFFSET_MASK;
        if ((word & L2Entry.QCOW_OFLAG_COMPRESSED) != 0 || offset == 0 || dataFile) {
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

  private Result run(SnapshotTable.Table table) throws IOException {
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
    reference(header.refcountTableOffset(), (long) header.refcountTableClusters() * clusterSize);
    refcountStructure.add(
        new long[] {header.refcountTableOffset(), header.refcountTableClusters() * clusterSize});
    long before = corruptions;
    checkRefcountBlocks();
    structureErrors = corruptions - before;
    long highest = compareRefcounts();
    checkCopiedFlags();
    return new Result(
        corruptions,
        leaks,
        checkErrors,
        (highest + 1) * clusterSize,
        clusters(header.virtualSize()),
        allocated,
        fragmented,
        compressed);
  }

  private long clusters(long bytes) {
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

  /** QEMU {@code check_oflag_copied}, without repairs: COPIED is set exactly at refcount 1. */
  private void checkCopiedFlags() throws IOException {
    long[] l1 = readTable(header.l1TableOffset(), header.l1Size(), null);
    if (l1 == null) {
      return;
    }
    int entries = geometry.l2Entries();
    for (int i = 0; i < l1.length; i++) {
      L1Entry l1e = new L1Entry(l1[i]);
      long l2Offset = l1e.l2Offset();
      if (l2Offset == 0) {
        continue;
      }
      long refcount;
      try {
        refcount = stored.refcount(l2Offset >>> geometry.clusterBits());
      } catch (IOException e) {
        continue; // as QEMU: no message, no count
      }
      if ((refcount == 1) != l1e.isCopied()) {
        report(
            "ERROR OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%x refcount=%d",
            i, l1[i], refcount);
        corruptions++;
        copiedErrors++;
      }
      int words = geometry.extendedL2() ? 2 * entries : entries;
      long[] table = readTable(l2Offset, words, null);
      if (table == null) {
        report("ERROR: Could not read L2 table: %s", "Input/output error");
        checkErrors++;
        continue;
      }
      for (int j = 0; j < entries; j++) {
        long word = geometry.extendedL2() ? table[2 * j] : table[j];
        if ((word & L2Entry.QCOW_OFLAG_COMPRESSED) != 0) {
          continue;
        }
        long offset = word & L2Entry.L2E_OFFSET_MASK;
        boolean allocatedEntry =
            offset != 0 || (dataFile && (word & L2Entry.QCOW_OFLAG_COPIED) != 0);
        if (!allocatedEntry) {
          continue;
        }
        long count;
        if (dataFile) {
          count = 1;
        } else {
          try {
            count = stored.refcount(offset >>> geometry.clusterBits());
          } catch (IOException e) {
            continue;
          }
        }
        if ((count == 1) != ((word & L2Entry.QCOW_OFLAG_COPIED) != 0)) {
          report("ERROR OFLAG_COPIED data cluster: l2_entry=%x refcount=%d", word, count);
          corruptions++;
          copiedErrors++;
        }
      }
    }
  }

  /**
   * {@code words} big-endian words at {@code offset}; null, with a check error counted when {@code
   * function} is given, when they cannot be read (past the end of the file).
   */
  /**
   * The table of {@code words} 64-bit words at {@code offset}; what lies past the end of the file
   * reads as zeros, as QEMU's block layer reads it.
   */
  private long[] readTable(long offset, int words, String function) throws IOException {
    if (offset < 0 || offset >= Header.MAX_HOST_OFFSET) {
      if (function != null) {
        report("ERROR: I/O error in %s", function);
        checkErrors++;
      }
      return null;
    }
    return MetadataIo.readWordsZeroPastEnd(file, offset, words);
  }

  private void report(String format, Object... args) {
    messages.accept(String.format(format, args));
  }

  @Override
  public String toString() {
    return "Qcow2Check(" + file.location() + ", " + hex(fileLength) + " bytes)";
  }
}
