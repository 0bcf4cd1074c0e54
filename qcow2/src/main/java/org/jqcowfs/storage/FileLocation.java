package org.jqcowfs.storage;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Optional;

/**
 * A local file, by its path as named (absolute or relative to the working directory).
 *
 * @param path the path as the user or the image named it
 */
public record FileLocation(Path path) implements Location {

  /** The location of {@code path}. */
  public static FileLocation of(Path path) {
    return new FileLocation(path);
  }

  @Override
  public Location resolve(String name) {
    return new FileLocation(path.toAbsolutePath().getParent().resolve(name).normalize());
  }

  @Override
  public Location directory() {
    return new FileLocation(path.toAbsolutePath().getParent());
  }

  @Override
  public boolean isInside(Location dir) throws IOException {
    return dir instanceof FileLocation d && path.toRealPath().startsWith(d.path());
  }

  @Override
  public Location real() throws IOException {
    return new FileLocation(path.toRealPath());
  }

  @Override
  public Location realDirectory() throws IOException {
    if (!Files.isDirectory(path)) {
      throw new IOException(path + ": allowed directory does not exist or is not a directory");
    }
    return real();
  }

  @Override
  public boolean exists() {
    return Files.exists(path);
  }

  @Override
  public Optional<Path> localPath() {
    return Optional.of(path);
  }

  @Override
  public String toString() {
    return path.toString();
  }
}
