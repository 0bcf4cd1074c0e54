package org.jqcowfs.io;

import java.io.Closeable;
import java.io.IOException;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.jqcowfs.storage.StorageOpener;

/**
 * Opens local files ({@link PosixStorage}) with the read policies of {@code options} (its {@code
 * writable} is the caller's per open), and locks them with QEMU's OFD lock bytes ({@link
 * ImageLock}).
 *
 * @param options the read policies
 */
public record PosixOpener(HostFileOptions options) implements StorageOpener {

  /** The default read policies. */
  public static final PosixOpener DEFAULT = new PosixOpener(HostFileOptions.DEFAULT);

  /**
   * @throws IOException also for a location that is not a local file, naming it
   */
  @Override
  public Storage open(Location location, boolean writable) throws IOException {
    return PosixStorage.open(local(location), options.withWritable(writable));
  }

  /** Refuses directories and FIFOs before the lock's own open could block on one. */
  @Override
  public Closeable lock(Location location, boolean writer) throws IOException {
    java.nio.file.Path path = local(location);
    PosixStorage.checkOpenable(path);
    return writer ? ImageLock.acquireForWrite(path) : ImageLock.acquire(path);
  }

  private static java.nio.file.Path local(Location location) throws IOException {
    return location.localPath().orElseThrow(() -> new IOException(location + ": not a local file"));
  }
}
