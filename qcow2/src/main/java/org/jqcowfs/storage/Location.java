package org.jqcowfs.storage;

import java.io.IOException;
import java.nio.file.Path;
import java.util.Optional;

/**
 * Where an image's bytes are: a local file ({@link FileLocation}), an object in memory ({@link
 * MemoryStorage}), next an HTTP(S) or S3 object. A {@link StorageOpener} turns it into a {@link
 * Storage}. Stored names (backing files, external data files) resolve against it, and confinement,
 * cycle detection and locks are decided on it. {@link #toString} is how messages name it: a path as
 * it was named. Immutable; equal locations name the same place as written, {@link #real} the same
 * place in fact.
 */
public interface Location {

  /**
   * {@code name}, stored in the image here, resolved relative to this location: for a file,
   * relative to its directory, never the working directory (QEMU {@code
   * bdrv_get_full_backing_filename}). Pseudo-names are refused before, by the name policy.
   */
  Location resolve(String name);

  /** Where the names of an image here may reach by default: its directory, and below. */
  Location directory();

  /**
   * Whether this location, in its real form, lies in {@code dir} (a {@link #real} directory) or
   * below it. A location of another kind never does.
   *
   * @throws IOException if the real form cannot be found
   */
  boolean isInside(Location dir) throws IOException;

  /**
   * The place in fact (a file's real path, symlinks resolved): what cycle detection compares.
   *
   * @throws IOException if it does not exist or cannot be asked
   */
  Location real() throws IOException;

  /**
   * This location as an allowed directory: its real form.
   *
   * @throws IOException if it does not exist or is not a directory, naming it
   */
  Location realDirectory() throws IOException;

  /** Whether something is there now. */
  boolean exists();

  /** The local file, where the location is one (its attributes, fstab, messages); else empty. */
  default Optional<Path> localPath() {
    return Optional.empty();
  }
}
