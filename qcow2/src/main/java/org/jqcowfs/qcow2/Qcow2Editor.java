package org.jqcowfs.qcow2;

import java.io.IOException;
import java.util.List;
import org.jqcowfs.image.Image;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.crypto.Luks;
import org.jqcowfs.qcow2.format.BitmapOp;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.write.FormatChanges;
import org.jqcowfs.storage.Location;

/**
 * The format changes of one writable {@link Qcow2Image} ({@link Qcow2Image#editor}): what {@code
 * qemu-img} refuses is refused here, with its words, before anything is written; the change itself
 * is the write side's ({@link FormatChanges}). Each is the last call before {@link
 * Qcow2Image#close}.
 */
public final class Qcow2Editor {
  private final Qcow2Image image;
  private final Location path;
  private final Header header;
  private final long virtualSize;
  private final List<Snapshot> snapshots;
  private final Image backing; // or null: none linked
  private final FormatChanges changes;

  Qcow2Editor(Qcow2Image image, Image backing, FormatChanges changes) {
    this.image = image;
    this.path = image.location();
    this.header = image.header();
    this.virtualSize = image.size();
    this.snapshots = image.snapshots();
    this.backing = backing;
    this.changes = changes;
  }

  /**
   * Makes this new, empty image encrypted with LUKS ({@link FormatChanges#setUpEncryption}); the
   * image is then only to be closed.
   *
   * @throws IOException if it is encrypted already, or a write fails
   */
  public void setUpEncryption(Luks.Created luks) throws IOException {
    changes.setUpEncryption(luks);
  }

  /**
   * Edits the persistent dirty bitmaps as {@code qemu-img bitmap} does ({@link
   * FormatChanges#editBitmaps}); the last call before {@link Qcow2Image#close}.
   *
   * @throws IllegalArgumentException if QEMU would refuse an operation, with its message
   * @throws IOException if the image cannot be read or written
   */
  public void editBitmaps(String name, List<BitmapOp> ops) throws IOException {
    changes.editBitmaps(name, ops);
  }

  /**
   * Unallocates every cluster of the active disk, so that it reads as its backing file (QEMU's
   * {@code qcow2_make_empty}, for commit); flushed. No persistent bitmap is marked.
   *
   * @throws IOException if a write or sync fails
   */
  public void makeEmpty() throws IOException {
    changes.makeEmpty(virtualSize);
  }

  /**
   * Gives the virtual disk {@code newBytes} bytes, as QEMU's {@code qcow2_co_truncate} with
   * preallocation off ({@link FormatChanges#resize}); the last call before {@link
   * Qcow2Image#close}. Where the linked backing image reaches past the old end, the new range reads
   * as zeros, not as it.
   *
   * @throws IllegalArgumentException with QEMU's message where it refuses: a size not a multiple of
   *     512, a v2 image with internal snapshots, or one with a backing file longer than it; and
   *     where jqcowfs does (an external data file)
   * @throws IOException if a write fails
   */
  public void resize(long newBytes) throws IOException {
    if (backing == null && header.backingFileName() != null) {
      throw new IOException(path + ": has a backing file; written through its chain, not alone");
    }
    if (newBytes < 0 || newBytes % 512 != 0) {
      throw new IllegalArgumentException("The new size must be a multiple of 512");
    }
    if (header.version() < 3 && header.nbSnapshots() > 0) {
      throw new IllegalArgumentException("Can't resize a v2 image which has snapshots");
    }
    if (header.dataFileName() != null) {
      throw new IllegalArgumentException(
          "jqcowfs does not resize an image with an external data file yet (qemu-img resize"
              + " does)");
    }
    boolean zeroNewRange =
        newBytes > virtualSize && backing != null && backing.size() > virtualSize;
    if (zeroNewRange && header.version() < 3) {
      throw new IllegalArgumentException(
          "Failed to zero out new clusters: Operation not supported");
    }
    changes.resize(newBytes, zeroNewRange);
  }

  /**
   * Names {@code name} (null: none) with format {@code format} as this image's backing file in its
   * header ({@link FormatChanges#changeBackingFile}, QEMU {@code qcow2_change_backing_file}); the
   * last call before {@link Qcow2Image#close}. What was written before is flushed first.
   *
   * @throws IllegalArgumentException for a name over 1023 bytes, or a format without a name
   * @throws IOException if the header cannot be rewritten
   */
  public void changeBackingFile(String name, String format) throws IOException {
    changes.changeBackingFile(name, format);
  }

  /**
   * Creates internal snapshot {@code name} of the active disk, dated now ({@code qemu-img snapshot
   * -c}, QEMU {@code qcow2_snapshot_create}); the last call before {@link Qcow2Image#close}. Names
   * need not be unique; the ID is the next free number.
   *
   * @throws IllegalArgumentException with qemu-img's words where QEMU refuses (a refcount width too
   *     small, an external data file); nothing is written then
   * @throws IOException if a write or sync fails
   */
  public void createSnapshot(String name) throws IOException {
    refuseSnapshotEdit();
    java.time.Instant now = java.time.Instant.now();
    changes.createSnapshot(name, snapshots, now.getEpochSecond(), now.getNano() / 1000 * 1000L);
  }

  /**
   * Deletes the first internal snapshot named {@code name} ({@code qemu-img snapshot -d}, QEMU
   * {@code qcow2_snapshot_delete}); the last call before {@link Qcow2Image#close}.
   *
   * @throws java.util.NoSuchElementException if no snapshot has that name
   * @throws IOException if a write or sync fails
   */
  public void deleteSnapshot(String name) throws IOException {
    refuseSnapshotEdit();
    for (int i = 0; i < snapshots.size(); i++) {
      if (snapshots.get(i).name().equals(name)) {
        changes.deleteSnapshot(snapshots.get(i), i, snapshots.size());
        return;
      }
    }
    throw new java.util.NoSuchElementException("snapshot not found");
  }

  /**
   * Reverts the active disk to internal snapshot {@code idOrName} (an ID first, then a name: {@code
   * qemu-img snapshot -a}, QEMU {@code qcow2_snapshot_goto}), its size included; the last call
   * before {@link Qcow2Image#close}.
   *
   * @throws java.util.NoSuchElementException if no snapshot has that ID or name
   * @throws IllegalArgumentException where QEMU refuses (as {@link #resize} for a size change), and
   *     for an image with persistent dirty bitmaps (the change would not be in them)
   * @throws IOException if a write or sync fails
   */
  public void applySnapshot(String idOrName) throws IOException {
    refuseSnapshotEdit();
    Snapshot target =
        snapshots.stream()
            .filter(s -> s.id().equals(idOrName))
            .findFirst()
            .or(() -> snapshots.stream().filter(s -> s.name().equals(idOrName)).findFirst())
            .orElseThrow(
                () ->
                    new java.util.NoSuchElementException(
                        "Failed to load snapshot: No such file or directory"));
    if (header.bitmaps() != null) {
      throw new IllegalArgumentException(
          "jqcowfs does not apply a snapshot to an image with persistent dirty bitmaps: their bits"
              + " would not record the change");
    }
    if (target.virtualSize() != virtualSize) {
      resize(target.virtualSize());
    }
    changes.applySnapshot(target);
  }

  /**
   * What {@code qemu-img amend -o} changes (null: unchanged).
   *
   * @param version 2 ({@code compat=0.10}) or 3 ({@code compat=1.1})
   * @param lazyRefcounts {@code lazy_refcounts}
   * @param refcountBits {@code refcount_bits}
   * @param virtualBytes {@code size}, in bytes
   */
  public record Amendment(
      Integer version, Boolean lazyRefcounts, Integer refcountBits, Long virtualBytes) {}

  /**
   * Changes the image's format options as {@code qemu-img amend} does (QEMU {@code
   * qcow2_amend_options}: upgrade, lazy refcounts, size, refcount width, downgrade, in that order;
   * {@link FormatChanges#amend}); the last call before {@link Qcow2Image#close}.
   *
   * @throws IllegalArgumentException with qemu-img's message where it refuses; nothing is written
   *     then (checked before the first write)
   * @throws IOException if a read, write or sync fails
   */
  public void amend(Amendment a) throws IOException {
    int oldVersion = header.version();
    int version = a.version() != null ? a.version() : oldVersion;
    int order = header.refcountOrder();
    if (a.refcountBits() != null) {
      int bits = a.refcountBits();
      if (bits <= 0 || bits > 64 || Integer.bitCount(bits) != 1) {
        throw new IllegalArgumentException(
            "Refcount width must be a power of two and may not exceed 64 bits");
      }
      order = Integer.numberOfTrailingZeros(bits);
      if (order != 4 && version < 3) {
        throw new IllegalArgumentException(
            "Refcount widths other than 16 bits require compatibility level 1.1 or above (use"
                + " compat=1.1 or greater)");
      }
    }
    if (Boolean.TRUE.equals(a.lazyRefcounts()) && version < 3) {
      throw new IllegalArgumentException(
          "Lazy refcounts only supported with compatibility level 1.1 and above (use compat=1.1"
              + " or greater)");
    }
    long newSize = a.virtualBytes() != null ? a.virtualBytes() : virtualSize;
    if (newSize != virtualSize && newSize % 512 != 0) {
      throw new IllegalArgumentException("The new size must be a multiple of 512");
    }
    if (newSize != virtualSize && oldVersion < 3 && version < 3 && !snapshots.isEmpty()) {
      throw new IllegalArgumentException("Can't resize a v2 image which has snapshots");
    }
    boolean downgrade = version < oldVersion;
    if (downgrade) {
      if (order != 4) {
        throw new IllegalArgumentException("compat=0.10 requires refcount_bits=16");
      }
      if (header.dataFileName() != null) {
        throw new IllegalArgumentException("Cannot downgrade an image with a data file");
      }
      long incompatible =
          header.incompatibleFeatures() & ~(Header.INCOMPAT_DIRTY | Header.INCOMPAT_COMPRESSION);
      if (incompatible != 0) {
        throw new IllegalArgumentException(
            "Cannot downgrade an image with incompatible features 0x"
                + Long.toHexString(incompatible)
                + " set");
      }
      refuseSnapshotEdit();
      for (Snapshot s : snapshots) {
        if (s.vmStateBytes() != 0 || s.virtualSize() != newSize) {
          throw new IllegalArgumentException("Internal snapshots prevent downgrade of image");
        }
      }
    }
    String refusal = changes.amendRefusal(order, downgrade, snapshots);
    if (refusal != null) {
      throw new IllegalArgumentException(refusal);
    }
    changes.amend( // a downgrade's v2 header drops the lazy refcounts bit with the other features
        version > oldVersion,
        a.lazyRefcounts(),
        newSize != virtualSize ? () -> resize(newSize) : null,
        order,
        downgrade,
        snapshots,
        header.backingFileName() != null);
  }

  /** QEMU's refusals of every snapshot change, and a table that did not read whole. */
  private void refuseSnapshotEdit() throws IOException {
    if (header.dataFileName() != null) {
      throw new IllegalArgumentException("-95 (Operation not supported)"); // qemu-img's words
    }
    if (image.snapshotTableDamage().isPresent()) {
      throw new ImageFormatException(path, image.snapshotTableDamage().get());
    }
  }
}
