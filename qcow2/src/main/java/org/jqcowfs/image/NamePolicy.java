package org.jqcowfs.image;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.stream.Collectors;

/**
 * Which host files a name stored in an image (a backing file, an external data file) may reach. The
 * names are the image maker's words, not the user's: confined, a name is followed only when its
 * real path (symlinks resolved) lies inside one of the allowed directories, so that an image cannot
 * show {@code /etc/shadow} through a backing name (the host-file class of CVE-2015-1850 and
 * CVE-2024-32498). Unsafe, any name is followed, as QEMU does. Names resolve as {@link
 * FileNames#resolve} says. Immutable.
 */
public final class NamePolicy {
  /** Follows any name, as QEMU does ({@code --unsafe-backing}). */
  public static final NamePolicy UNSAFE = new NamePolicy(List.of(), true);

  private final List<Path> allowedDirs;
  private final boolean unsafe;

  private NamePolicy(List<Path> allowedDirs, boolean unsafe) {
    this.allowedDirs = List.copyOf(allowedDirs);
    this.unsafe = unsafe;
  }

  /**
   * Names may reach files inside {@code dirs} and below them.
   *
   * @param dirs directories, each resolved to its real path now
   * @throws IOException if a directory does not exist or is not a directory, naming it
   */
  public static NamePolicy confinedTo(Collection<Path> dirs) throws IOException {
    List<Path> real = new ArrayList<>();
    for (Path d : dirs) {
      if (!Files.isDirectory(d)) {
        throw new IOException(d + ": allowed directory does not exist or is not a directory");
      }
      real.add(d.toRealPath());
    }
    return new NamePolicy(real, false);
  }

  /** The directory holding {@code image} (as named, absolute), where names may reach by default. */
  public static Path directoryOf(Path image) {
    return image.toAbsolutePath().getParent();
  }

  /**
   * Resolves {@code name}, stored in {@code image}, and checks that it may be followed. A name
   * whose file does not exist is returned as resolved; opening it then fails.
   *
   * @param field what the name is, for the message ("backing file", "external data file")
   * @return the resolved path (not the real path: messages and {@code info} show it as named)
   * @throws ImageFormatException for a refused pseudo-name ({@link FileNames#resolve}), or a name
   *     whose real path lies outside the allowed directories: the message names the image, the
   *     name, where it resolved, and the options that allow it
   * @throws IOException if the real path cannot be found
   */
  public Path resolve(Path image, String name, String field) throws IOException {
    Path p = FileNames.resolve(image, name, field);
    if (unsafe || !Files.exists(p)) {
      return p;
    }
    Path real = p.toRealPath();
    for (Path dir : allowedDirs) {
      if (real.startsWith(dir)) {
        return p;
      }
    }
    throw new ImageFormatException(
        image,
        field
            + " '"
            + name
            + "' resolves to "
            + real
            + ", outside the allowed directories ("
            + allowedDirs.stream().map(Path::toString).collect(Collectors.joining(", "))
            + "); refused: pass --allow-dir DIR to allow a directory, or --unsafe-backing to"
            + " follow any name as QEMU does (only for images you trust)");
  }
}
