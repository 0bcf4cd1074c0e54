package org.jqcowfs.qcow2;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.image.NamePolicy;
import org.jqcowfs.qcow2.crypto.Luks;
import org.jqcowfs.qcow2.crypto.LuksHeader;
import org.jqcowfs.qcow2.crypto.SectorCipher;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.SnapshotTable;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.jqcowfs.storage.StorageOpener;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Opens a qcow2 layer (QEMU {@code qcow2_do_open}): the header, the snapshot table, the L1 table of
 * the active image or of the snapshot asked for, and the external data file.
 */
final class Qcow2Opener {
  private static final Logger LOG = LoggerFactory.getLogger(Qcow2Image.class);

  private Qcow2Opener() {}

  /** As {@link Qcow2Image#open(Location, Qcow2Options)}. */
  static Qcow2Image open(Location path, Qcow2Options options) throws IOException {
    boolean writable = options.hostIo().writable();
    StorageOpener opener = options.opener();
    Closeable writeLock = writable ? opener.lock(path, true) : null;
    Storage file;
    try {
      file = opener.open(path, writable);
    } catch (IOException | RuntimeException e) {
      if (writeLock != null) {
        writeLock.close();
      }
      throw e;
    }
    try {
      if (writable && MetadataIo.readHeader(file).hasIncompatible(Header.INCOMPAT_DIRTY)) {
        repairDirty(path, file);
      }
    } catch (IOException | RuntimeException e) {
      file.close();
      writeLock.close();
      throw e;
    }
    return open(path, options, file, writeLock);
  }

  /**
   * Rebuilds the refcounts of an image left dirty by lazy refcounts before it is written, as QEMU
   * does when it opens one read-write ({@code qcow2_do_open}: {@code qcow2_co_check_locked} with
   * both fix flags, then {@code qcow2_mark_clean}).
   *
   * @throws ImageFormatException if corruptions remain after the repair
   */
  private static void repairDirty(Location location, Storage file) throws IOException {
    LOG.warn("{}: the dirty bit is set (lazy refcounts); repairing the refcounts", location);
    Qcow2Check.Repair r = Qcow2Check.repair(file, true, line -> LOG.info("{}: {}", location, line));
    if (r.after().exitStatus() == 1 || r.after().exitStatus() == 2) {
      throw new ImageFormatException(
          location,
          "cannot open for writing: "
              + r.after().corruptions()
              + " corruptions remain after repairing the dirty image's refcounts");
    }
    LOG.info(
        "{}: repaired {} leaked clusters and {} corruptions",
        location,
        r.leaksFixed(),
        r.corruptionsFixed());
  }

  /**
   * Opens the image in {@code file} (opened from {@code path}; tests give a recording one), closing
   * it and {@code writeLock} if the open fails.
   *
   * @param writeLock the writer's lock, or null to open read-only
   */
  static Qcow2Image open(Location path, Qcow2Options options, Storage file, Closeable writeLock)
      throws IOException {
    boolean writable = writeLock != null;
    Storage dataFile = null;
    SectorCipher cipher = null;
    try {
      Header h = MetadataIo.readHeader(file);
      if (writable) {
        refuseWrites(path, h, options);
      }
      boolean withoutKey = options.withoutKey() && !writable;
      if (h.crypto() != null) {
        cipher = unlock(path, file, h.crypto(), options.passphrases(), withoutKey);
      } else if (h.cryptMethod() == 1) {
        cipher =
            withoutKey && options.passphrases().isEmpty()
                ? SectorCipher.LOCKED
                : legacyAes(path, options.passphrases());
      }
      if (h.hasIncompatible(Header.INCOMPAT_CORRUPT)) {
        LOG.warn("{}: the corrupt bit is set; opening read-only anyway", path);
      }
      if (h.hasIncompatible(Header.INCOMPAT_DIRTY)) {
        LOG.warn("{}: the dirty bit is set (refcounts may be stale); reading is unaffected", path);
      }
      List<Snapshot> snapshots;
      long snapshotTableBytes = 0;
      String snapshotDamage = null;
      try {
        SnapshotTable.Table table = SnapshotTable.readTable(file, h);
        snapshots = table.snapshots();
        snapshotTableBytes = table.bytes();
      } catch (ImageFormatException e) {
        if (options.snapshot() != null || writable) {
          throw e;
        }
        // The active image does not need the table: a damaged one hides the snapshots only.
        LOG.warn("{}; the snapshot table is ignored", e.getMessage());
        snapshots = List.of();
        snapshotDamage = e.getMessage();
      }
      long l1Offset = h.l1TableOffset();
      int l1Size = h.l1Size();
      long size = h.virtualSize();
      Snapshot chosen = null;
      if (options.snapshot() != null) {
        chosen = find(snapshots, options.snapshot(), path);
        l1Offset = chosen.l1TableOffset();
        l1Size = chosen.l1Size();
        size = chosen.virtualSize() & ~511L;
      }
      long[] l1 = MetadataIo.readWords(file, l1Offset, l1Size);
      if (h.dataFileName() != null) {
        NamePolicy names =
            options.names() != null
                ? options.names()
                : NamePolicy.confinedTo(List.of(path.directory()));
        Location dataPath = names.resolve(path, h.dataFileName(), "external data file");
        try {
          dataFile = options.opener().open(dataPath, false);
        } catch (IOException e) {
          throw new ImageFormatException(
              path, "external data file '" + h.dataFileName() + "': " + e.getMessage());
        }
      }
      return new Qcow2Image(
          file,
          dataFile != null ? dataFile : file,
          h,
          l1,
          size,
          snapshots,
          snapshotDamage,
          chosen,
          options.l2CacheBytes(),
          writeLock,
          snapshotTableBytes,
          cipher);
    } catch (IOException | RuntimeException e) {
      if (cipher != null) {
        cipher.destroy();
      }
      if (dataFile != null) {
        dataFile.close();
      }
      file.close();
      if (writeLock != null) {
        writeLock.close();
      }
      throw e;
    }
  }

  /**
   * Refuses to open for writing what the writer does not keep consistent: a snapshot view, an image
   * marked corrupt or dirty (its refcounts need a repair first), an external data file.
   */
  private static void refuseWrites(Location path, Header h, Qcow2Options options)
      throws ImageFormatException {
    String why = null;
    if (options.snapshot() != null) {
      why = "a snapshot is read-only";
    } else if (h.hasIncompatible(Header.INCOMPAT_CORRUPT)) {
      why = "the corrupt bit is set; repair it with qemu-img check -r all";
    } else if (h.hasIncompatible(Header.INCOMPAT_DIRTY)) {
      why = "the dirty bit is still set after the refcount repair";
    } else if (h.dataFileName() != null) {
      why = "writing to an external data file is not supported";
    } else if (h.cryptMethod() == 1) {
      why = "images encrypted with the legacy AES method are read-only";
    }
    if (why != null) {
      throw new ImageFormatException(path, "cannot open for writing: " + why);
    }
  }

  /**
   * The data cipher of a LUKS-encrypted image: its LUKS header read from the area the extension
   * names and checked, then each passphrase tried on every key slot ({@link Luks#unlock}).
   *
   * @param withoutKey when no passphrase opens a slot, {@link SectorCipher#LOCKED} (metadata only)
   * @throws ImageFormatException naming the image: a LUKS header QEMU would refuse, a cipher not
   *     supported, no passphrase given, or none that opens a key slot
   */
  private static SectorCipher unlock(
      Location path, Storage file, Header.Crypto area, List<byte[]> passphrases, boolean withoutKey)
      throws IOException {
    ByteBuffer b = ByteBuffer.allocate(LuksHeader.BYTES);
    file.readFully(b, area.offset());
    LuksHeader luks;
    try {
      luks = LuksHeader.decode(b.flip(), area.length());
      Luks.checkSupported(luks);
    } catch (IllegalArgumentException e) {
      throw new ImageFormatException(path, e.getMessage());
    }
    if (passphrases.isEmpty() && withoutKey) {
      return SectorCipher.LOCKED;
    }
    if (passphrases.isEmpty()) {
      throw new ImageFormatException(path, "encrypted with LUKS: give --key-file");
    }
    long start = System.nanoTime();
    for (byte[] passphrase : passphrases) {
      SectorCipher c =
          Luks.unlock(luks, (dst, at) -> file.readFully(dst, area.offset() + at), passphrase);
      if (c != null) {
        LOG.debug("{}: key slot opened in {} ms", path, (System.nanoTime() - start) / 1_000_000);
        return c;
      }
    }
    if (withoutKey) {
      return SectorCipher.LOCKED;
    }
    throw new ImageFormatException(
        path,
        passphrases.size() == 1
            ? "no key slot opens with this passphrase"
            : "no key slot opens with any of the " + passphrases.size() + " passphrases");
  }

  /**
   * The cipher of an image encrypted with qcow2's legacy AES method ({@code crypt_method} 1, QEMU
   * {@code crypto/block-qcow.c}): AES-128-CBC, the key the passphrase's first 16 bytes (up to a
   * NUL, zero-padded), the IV the guest sector. Nothing in the image tells a wrong passphrase from
   * the right one: the first is used, and a warning says the method is weak.
   *
   * @throws ImageFormatException if no passphrase is given
   */
  private static SectorCipher legacyAes(Location path, List<byte[]> passphrases)
      throws ImageFormatException {
    if (passphrases.isEmpty()) {
      throw new ImageFormatException(
          path, "encrypted with the legacy AES method (crypt_method 1): give --key-file");
    }
    LOG.warn(
        "{}: encrypted with qcow2's legacy AES method, which is weak (QEMU no longer runs such"
            + " images); the passphrase cannot be checked: a wrong one reads as garbage",
        path);
    return Luks.legacyAes(passphrases.get(0));
  }

  private static Snapshot find(List<Snapshot> snapshots, String idOrName, Location path)
      throws ImageFormatException {
    for (Snapshot s : snapshots) {
      if (s.id().equals(idOrName)) {
        return s;
      }
    }
    for (Snapshot s : snapshots) {
      if (s.name().equals(idOrName)) {
        return s;
      }
    }
    throw new ImageFormatException(path, "no snapshot with id or name '" + idOrName + "'");
  }
}
