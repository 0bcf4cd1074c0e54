package org.jqcowfs.storage;

import java.io.Closeable;
import java.io.IOException;
import java.util.Optional;

/**
 * Turns a {@link Location} into a {@link Storage}, and locks it as QEMU locks an image: injected
 * through the open options, so that the image code never opens anything itself.
 */
public interface StorageOpener {

  /**
   * Opens the storage at {@code location}, read-only unless {@code writable}.
   *
   * @throws java.nio.file.NoSuchFileException if nothing is there
   * @throws IOException if it cannot be opened as asked, naming the location (a directory, a FIFO:
   *     refused before anything could block)
   */
  Storage open(Location location, boolean writable) throws IOException;

  /**
   * Locks {@code location} as QEMU locks an image it opens (its OFD lock bytes for a file): shared
   * with other readers for a reader, and refused while another process writes; exclusive of other
   * writers for a writer. A storage with no locks gives a lock that does nothing.
   *
   * @param writer lock as a writer; else as a reader
   * @return the lock; closing it lets go
   * @throws IOException if another process holds a conflicting lock, naming the location
   */
  Closeable lock(Location location, boolean writer) throws IOException;

  /**
   * The location that {@code name}, an absolute name of a place this opener reads besides files (a
   * URL), names; empty when it names none (the name policy then refuses it as a protocol name).
   * Whether it may be followed is the name policy's to decide.
   */
  default Optional<Location> absoluteName(String name) {
    return Optional.empty();
  }
}
