package org.jqcowfs.chain;

import java.nio.file.Path;
import java.util.List;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.StorageOpener;

/**
 * How to open a backing chain.
 *
 * @param maxDepth the most layers below the top image, at least 1 (default 64)
 * @param l2CacheBytes L2 cache bytes per qcow2 layer, -1 for QEMU's default
 * @param snapshot id or name of an internal snapshot of the top image to show, or null
 * @param forceShare true: take no QEMU-compatible locks ({@code qemu-img -U}), and so read images
 *     that another process writes; false: lock every file as a reader ({@link
 *     org.jqcowfs.io.ImageLock})
 * @param allowDirs directories (local ones, or URL prefixes) besides the top image's own where
 *     backing and data file names may lead ({@code --allow-dir})
 * @param unsafeBacking follow any backing or data file name, as QEMU does ({@code
 *     --unsafe-backing})
 * @param probeBackingFormat probe a backing file with no stored format into qcow2 when it has the
 *     qcow2 magic ({@code --probe-backing-format}); false: refuse such a file
 * @param topFormat the top image's format ({@code --format}); never probed
 * @param hostIo whether the top image is opened writable, and the read policies of local files
 * @param storage what opens and locks each layer's storage, or null for local files read as {@code
 *     hostIo} says ({@link #opener})
 * @param passphrases tried in order on each layer encrypted with LUKS ({@code --key-file}); empty:
 *     none
 * @param withoutKeys open a layer encrypted with LUKS that no passphrase opens without its key, for
 *     its metadata only (as {@code qemu-img info} opens it, QEMU's {@code BDRV_O_NO_IO}): reading
 *     its data fails; false: refuse to open it
 */
public record ChainOptions(
    int maxDepth,
    long l2CacheBytes,
    String snapshot,
    boolean forceShare,
    List<Location> allowDirs,
    boolean unsafeBacking,
    boolean probeBackingFormat,
    ChainOpener.Format topFormat,
    HostFileOptions hostIo,
    StorageOpener storage,
    List<byte[]> passphrases,
    boolean withoutKeys) {
  /** The default cap on chain depth. */
  public static final int DEFAULT_MAX_DEPTH = 64;

  /**
   * Defaults: depth cap 64, QEMU's cache size, the active image, locks taken, names confined to the
   * top image's directory, no probing into qcow2, a qcow2 top image.
   */
  public static final ChainOptions DEFAULT =
      new ChainOptions(
          DEFAULT_MAX_DEPTH,
          -1,
          null,
          false,
          List.of(),
          false,
          false,
          ChainOpener.Format.QCOW2,
          HostFileOptions.DEFAULT,
          null,
          List.of(),
          false);

  public ChainOptions {
    if (maxDepth < 1) {
      throw new IllegalArgumentException("maxDepth must be >= 1: " + maxDepth);
    }
    allowDirs = List.copyOf(allowDirs);
    if (topFormat == null || hostIo == null) {
      throw new IllegalArgumentException("topFormat and hostIo must be given");
    }
  }

  /** These options with a snapshot of the top image (null: the active image). */
  public ChainOptions withSnapshot(String idOrName) {
    return new ChainOptions(
        maxDepth,
        l2CacheBytes,
        idOrName,
        forceShare,
        allowDirs,
        unsafeBacking,
        probeBackingFormat,
        topFormat,
        hostIo,
        storage,
        passphrases,
        withoutKeys);
  }

  /** These options with {@code forceShare} set as given. */
  public ChainOptions withForceShare(boolean share) {
    return new ChainOptions(
        maxDepth,
        l2CacheBytes,
        snapshot,
        share,
        allowDirs,
        unsafeBacking,
        probeBackingFormat,
        topFormat,
        hostIo,
        storage,
        passphrases,
        withoutKeys);
  }

  /** These options with this L2 cache capacity in bytes (-1: QEMU's default). */
  public ChainOptions withL2CacheBytes(long bytes) {
    return new ChainOptions(
        maxDepth,
        bytes,
        snapshot,
        forceShare,
        allowDirs,
        unsafeBacking,
        probeBackingFormat,
        topFormat,
        hostIo,
        storage,
        passphrases,
        withoutKeys);
  }

  /**
   * These options with the rules for names stored in images: extra allowed directories, QEMU's
   * follow-anything, probing a format-less backing file into qcow2.
   */
  public ChainOptions withNames(List<Path> dirs, boolean unsafe, boolean probe) {
    return withAllowedDirs(
        dirs.stream().map(d -> (Location) FileLocation.of(d)).toList(), unsafe, probe);
  }

  /** As {@link #withNames}, with directories of any kind (local, or URL prefixes). */
  public ChainOptions withAllowedDirs(List<Location> dirs, boolean unsafe, boolean probe) {
    return new ChainOptions(
        maxDepth,
        l2CacheBytes,
        snapshot,
        forceShare,
        dirs,
        unsafe,
        probe,
        topFormat,
        hostIo,
        storage,
        passphrases,
        withoutKeys);
  }

  /** These options with the top image's format. */
  public ChainOptions withTopFormat(ChainOpener.Format format) {
    return new ChainOptions(
        maxDepth,
        l2CacheBytes,
        snapshot,
        forceShare,
        allowDirs,
        unsafeBacking,
        probeBackingFormat,
        format,
        hostIo,
        storage,
        passphrases,
        withoutKeys);
  }

  /** These options with another way of opening and reading host files. */
  public ChainOptions withHostIo(HostFileOptions io) {
    return new ChainOptions(
        maxDepth,
        l2CacheBytes,
        snapshot,
        forceShare,
        allowDirs,
        unsafeBacking,
        probeBackingFormat,
        topFormat,
        io,
        storage,
        passphrases,
        withoutKeys);
  }

  /**
   * These options with the passphrases tried, in order, on each layer encrypted with LUKS (held,
   * not copied: the caller zeroes them when the chain is closed).
   */
  public ChainOptions withPassphrases(List<byte[]> keys) {
    return new ChainOptions(
        maxDepth,
        l2CacheBytes,
        snapshot,
        forceShare,
        allowDirs,
        unsafeBacking,
        probeBackingFormat,
        topFormat,
        hostIo,
        storage,
        keys,
        withoutKeys);
  }

  /** These options opening encrypted layers without their keys, as {@code withoutKeys} says. */
  public ChainOptions withoutKeys(boolean metadataOnly) {
    return new ChainOptions(
        maxDepth,
        l2CacheBytes,
        snapshot,
        forceShare,
        allowDirs,
        unsafeBacking,
        probeBackingFormat,
        topFormat,
        hostIo,
        storage,
        passphrases,
        metadataOnly);
  }

  /** These options opening and locking each layer's storage with {@code opener}. */
  public ChainOptions withStorage(StorageOpener opener) {
    return new ChainOptions(
        maxDepth,
        l2CacheBytes,
        snapshot,
        forceShare,
        allowDirs,
        unsafeBacking,
        probeBackingFormat,
        topFormat,
        hostIo,
        opener,
        passphrases,
        withoutKeys);
  }

  /** What opens and locks storage: {@link #storage}, or local files read as {@code hostIo} says. */
  public StorageOpener opener() {
    return storage != null ? storage : new PosixOpener(hostIo);
  }
}
