package org.jqcowfs.qcow2;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** Scratch files for fuzz inputs, in tmpfs when there is one, deleted at exit. */
final class FuzzFiles {
  private FuzzFiles() {}

  static Path scratch(String name) {
    try {
      Path shm = Path.of("/dev/shm");
      Path dir =
          Files.isDirectory(shm) && Files.isWritable(shm)
              ? Files.createTempDirectory(shm, "jqcowfs-fuzz")
              : Files.createTempDirectory("jqcowfs-fuzz");
      dir.toFile().deleteOnExit();
      Path f = dir.resolve(name);
      f.toFile().deleteOnExit();
      return f;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }
}
