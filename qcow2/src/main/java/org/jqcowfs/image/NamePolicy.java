package org.jqcowfs.image;

import java.io.IOException;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.stream.Collectors;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.StorageOpener;

/**
 * Which locations a name stored in an image (a backing file, an external data file) may reach. The
 * names are the image maker's words, not the user's: confined, a name is followed only when its
 * real location (a file's real path, symlinks resolved) lies inside one of the allowed directories,
 * so that an image cannot show {@code /etc/shadow} through a backing name (the host-file class of
 * CVE-2015-1850 and CVE-2024-32498). Unsafe, any name is followed, as QEMU does. Names resolve as
 * {@link FileNames#resolve} says. Immutable.
 */
public final class NamePolicy {
  /** Follows any name, as QEMU does ({@code --unsafe-backing}). */
  public static final NamePolicy UNSAFE = new NamePolicy(List.of(), true, null);

  private final List<Location> allowedDirs;
  private final boolean unsafe;
  private final StorageOpener urls;

  private NamePolicy(List<Location> allowedDirs, boolean unsafe, StorageOpener urls) {
    this.allowedDirs = List.copyOf(allowedDirs);
    this.unsafe = unsafe;
    this.urls = urls;
  }

  /**
   * This policy, also resolving the URL names that {@code opener} reads when a local image stores
   * them ({@link FileNames#resolve}); confined, such a name is followed only inside an allowed URL
   * prefix.
   */
  public NamePolicy withUrlNames(StorageOpener opener) {
    return new NamePolicy(allowedDirs, unsafe, opener);
  }

  /**
   * Names may reach files inside {@code dirs} and below them.
   *
   * @param dirs directories, each resolved to its real location now ({@link
   *     Location#realDirectory})
   * @throws IOException if a directory does not exist or is not a directory, naming it
   */
  public static NamePolicy confinedTo(Collection<? extends Location> dirs) throws IOException {
    List<Location> real = new ArrayList<>();
    for (Location d : dirs) {
      real.add(d.realDirectory());
    }
    return new NamePolicy(real, false, null);
  }

  /**
   * Resolves {@code name}, stored in {@code image}, and checks that it may be followed. A name
   * whose file does not exist is returned as resolved; opening it then fails.
   *
   * @param field what the name is, for the message ("backing file", "external data file")
   * @return the resolved location (not the real one: messages and {@code info} show it as named)
   * @throws ImageFormatException for a refused pseudo-name ({@link FileNames#resolve}), or a name
   *     whose real path lies outside the allowed directories: the message names the image, the
   *     name, where it resolved, and the options that allow it
   * @throws IOException if the real location cannot be found
   */
  public Location resolve(Location image, String name, String field) throws IOException {
    Location p = FileNames.resolve(image, name, field, urls);
    if (unsafe || !p.exists()) {
      return p;
    }
    for (Location dir : allowedDirs) {
      if (p.isInside(dir)) {
        return p;
      }
    }
    Location real = p.real();
    throw new ImageFormatException(
        image,
        field
            + " '"
            + name
            + "' resolves to "
            + real
            + ", outside the allowed directories ("
            + allowedDirs.stream().map(Location::toString).collect(Collectors.joining(", "))
            + "); refused: pass --allow-dir DIR to allow a directory, or --unsafe-backing to"
            + " follow any name as QEMU does (only for images you trust)");
  }
}
