package org.jqcowfs.qcow2;

import java.io.IOException;
import java.nio.file.Path;
import java.util.function.Consumer;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.ImageLock;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.SnapshotTable;
import org.jqcowfs.storage.Storage;

/**
 * The consistency check of one qcow2 file, as {@code qemu-img check} does it without repairs (QEMU
 * {@code qcow2_check_refcounts}: {@code calculate_refcounts}, {@code check_refblocks}, {@code
 * compare_refcounts}, {@code check_oflag_copied}). Every cluster the metadata references (header,
 * L1 and L2 tables, data and compressed clusters of the active image and of every snapshot, the
 * snapshot table, the refcount table and blocks) is counted, and the counts are compared with the
 * stored refcounts: a refcount below its references is a corruption, above them a leak. Messages
 * are QEMU's, one per finding. The walk is {@link RefcountCheck}, the fixes {@link RefcountRepair}.
 */
public final class Qcow2Check {
  private Qcow2Check() {}

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

  /**
   * Checks the qcow2 image at {@code path}; each finding goes to {@code messages} as qemu-img words
   * it.
   *
   * @throws ImageFormatException if the image cannot be opened (qemu-img check cannot open it
   *     either), its bitmap directory included
   * @throws IOException if the file cannot be read
   */
  public static Result check(Path path, Consumer<String> messages) throws IOException {
    try (Storage file = PosixStorage.open(path, HostFileOptions.DEFAULT)) {
      return check(file, messages);
    }
  }

  /**
   * As {@link #check(Path, Consumer)}, for the qcow2 image in {@code file}.
   *
   * @throws ImageFormatException if the image cannot be checked
   * @throws IOException if the storage cannot be read
   */
  public static Result check(Storage file, Consumer<String> messages) throws IOException {
    Header h = MetadataIo.readHeader(file, true);
    checkBitmaps(file, h, messages);
    SnapshotTable.Table snapshots = SnapshotTable.readTable(file, h, true);
    return new RefcountCheck(file, h, messages).run(snapshots);
  }

  /**
   * A stale bitmaps extension (autoclear bit clear) is ignored with QEMU's warning ({@code
   * qcow2_read_extensions}); consistent bitmaps are counted by {@link RefcountCheck}.
   */
  private static void checkBitmaps(Storage file, Header h, Consumer<String> messages) {
    if (h.bitmaps() == null || h.bitmaps().consistent()) {
      return;
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
    try (ImageLock lock = ImageLock.acquireForWrite(path);
        Storage file = PosixStorage.open(path, HostFileOptions.DEFAULT.withWritable(true))) {
      return repair(file, all, messages);
    }
  }

  /**
   * As {@link #repair(Path, boolean, Consumer)}, for the qcow2 image in the writable {@code file},
   * whose writer's lock the caller holds (QEMU's open of a dirty image repairs this way).
   *
   * @throws ImageFormatException if the image cannot be checked
   * @throws IOException if the storage cannot be read or written, or the structure needs a rebuild
   *     that {@code all} does not allow
   */
  public static Repair repair(Storage file, boolean all, Consumer<String> messages)
      throws IOException {
    long leaksFixed = 0;
    long corruptionsFixed = 0;
    Header h = MetadataIo.readHeader(file);
    checkBitmaps(file, h, messages);
    SnapshotTable.Table snapshots = SnapshotTable.readTable(file, h);
    RefcountCheck c = new RefcountCheck(file, h, messages);
    Result before = c.run(snapshots);
    RefcountRepair fix = new RefcountRepair(c);
    // QEMU rebuilds for a referenced cluster at refcount 0 or a bad block; -r leaks cannot
    boolean rebuild = c.unrefcounted > 0 || c.structureErrors > 0;
    if (rebuild && !all) {
      messages.accept("ERROR need to rebuild refcount structures");
      throw new IOException(
          file.location() + ": check failed: the refcount structure needs a rebuild (-r all)");
    }
    if (all && (rebuild || c.refcountErrors > 0)) {
      fix.rebuildRefcounts();
      leaksFixed = before.leaks();
      corruptionsFixed = c.refcountErrors + c.structureErrors;
    } else if (before.leaks() > 0) {
      leaksFixed = fix.fixLeaks();
    }
    // -r leaks mends COPIED flags too when nothing else is wrong (check_oflag_copied)
    boolean onlyCopied = before.corruptions() == c.copiedErrors && before.checkErrors() == 0;
    if (c.copiedErrors > 0 && (all || onlyCopied)) {
      corruptionsFixed += fix.fixCopiedFlags();
    }
    file.flush();
    if (leaksFixed + corruptionsFixed > 0) {
      messages.accept("The following inconsistencies were found and repaired:");
      messages.accept("");
      messages.accept("    " + leaksFixed + " leaked clusters");
      messages.accept("    " + corruptionsFixed + " corruptions");
      messages.accept("");
      messages.accept("Double checking the fixed image now...");
    }
    Result after = check(file, messages);
    if (all && after.corruptions() == 0 && after.checkErrors() == 0) {
      RefcountRepair.clearBits(file);
      file.flush();
    }
    return new Repair(before, leaksFixed, corruptionsFixed, after);
  }
}
