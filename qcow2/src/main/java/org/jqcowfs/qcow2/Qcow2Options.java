package org.jqcowfs.qcow2;

import java.util.List;
import org.jqcowfs.image.NamePolicy;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.storage.StorageOpener;

/**
 * How to open a qcow2 image.
 *
 * @param l2CacheBytes the L2 cache capacity in bytes, or -1 for QEMU's default (enough to map the
 *     whole disk, up to 32 MiB)
 * @param snapshot the id or name of an internal snapshot whose read-only view to open, or null for
 *     the active image
 * @param names which locations an external data file name may reach; null: the image's own
 *     directory and below ({@link NamePolicy#confinedTo})
 * @param hostIo whether the image is opened writable, and the read policies of local files
 * @param storage what opens the image and its data file, or null for local files read as {@code
 *     hostIo} says ({@link #opener})
 * @param passphrases tried in order on an image encrypted with LUKS; empty: none given
 * @param withoutKey open an image encrypted with LUKS that no passphrase opens without its key, for
 *     its metadata only ({@code qemu-img info}'s {@code BDRV_O_NO_IO}): reading its encrypted data
 *     then fails naming the image; false: refuse to open it
 */
public record Qcow2Options(
    long l2CacheBytes,
    String snapshot,
    NamePolicy names,
    HostFileOptions hostIo,
    StorageOpener storage,
    List<byte[]> passphrases,
    boolean withoutKey) {
  /** The defaults: QEMU's cache size, the active image, names confined to the image's directory. */
  public static final Qcow2Options DEFAULT =
      new Qcow2Options(-1, null, null, HostFileOptions.DEFAULT);

  /** Options that open local files ({@code storage} null), with no passphrase. */
  public Qcow2Options(
      long l2CacheBytes, String snapshot, NamePolicy names, HostFileOptions hostIo) {
    this(l2CacheBytes, snapshot, names, hostIo, null, List.of(), false);
  }

  /** Options with no passphrase. */
  public Qcow2Options(
      long l2CacheBytes,
      String snapshot,
      NamePolicy names,
      HostFileOptions hostIo,
      StorageOpener storage) {
    this(l2CacheBytes, snapshot, names, hostIo, storage, List.of(), false);
  }

  /**
   * These options with the passphrases tried, in order, on an image encrypted with LUKS (the bytes
   * of each key file, as QEMU's {@code --object secret,file=} reads them; held, not copied).
   */
  public Qcow2Options withPassphrases(List<byte[]> keys) {
    return new Qcow2Options(l2CacheBytes, snapshot, names, hostIo, storage, keys, withoutKey);
  }

  /** These options opening an image encrypted with LUKS without its key, as {@code withoutKey}. */
  public Qcow2Options withoutKey(boolean metadataOnly) {
    return new Qcow2Options(
        l2CacheBytes, snapshot, names, hostIo, storage, passphrases, metadataOnly);
  }

  /**
   * What opens the image's storage: {@link #storage}, or local files read as {@code hostIo} says.
   */
  public StorageOpener opener() {
    return storage != null ? storage : new PosixOpener(hostIo);
  }

  /** These options with other host I/O options (writable, for a writer). */
  public Qcow2Options withHostIo(HostFileOptions io) {
    return new Qcow2Options(l2CacheBytes, snapshot, names, io, storage, passphrases, withoutKey);
  }

  /** These options with another snapshot (null: the active image). */
  public Qcow2Options withSnapshot(String idOrName) {
    return new Qcow2Options(
        l2CacheBytes, idOrName, names, hostIo, storage, passphrases, withoutKey);
  }

  /** These options opening storage with {@code opener}. */
  public Qcow2Options withStorage(StorageOpener opener) {
    return new Qcow2Options(l2CacheBytes, snapshot, names, hostIo, opener, passphrases, withoutKey);
  }
}
