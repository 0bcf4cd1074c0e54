package org.jqcowfs.qcow2;

import org.jqcowfs.image.NamePolicy;
import org.jqcowfs.io.HostFileOptions;

/**
 * How to open a qcow2 image.
 *
 * @param l2CacheBytes the L2 cache capacity in bytes, or -1 for QEMU's default (enough to map the
 *     whole disk, up to 32 MiB)
 * @param snapshot the id or name of an internal snapshot whose read-only view to open, or null for
 *     the active image
 * @param names which files an external data file name may reach; null: the image's own directory
 *     and below ({@link NamePolicy#confinedTo})
 * @param hostIo how the image file and its data file are opened and read
 */
public record Qcow2Options(
    long l2CacheBytes, String snapshot, NamePolicy names, HostFileOptions hostIo) {
  /** The defaults: QEMU's cache size, the active image, names confined to the image's directory. */
  public static final Qcow2Options DEFAULT =
      new Qcow2Options(-1, null, null, HostFileOptions.DEFAULT);

  /** These options with other host I/O options (writable, for a writer). */
  public Qcow2Options withHostIo(HostFileOptions io) {
    return new Qcow2Options(l2CacheBytes, snapshot, names, io);
  }

  /** These options with another snapshot (null: the active image). */
  public Qcow2Options withSnapshot(String idOrName) {
    return new Qcow2Options(l2CacheBytes, idOrName, names, hostIo);
  }
}
