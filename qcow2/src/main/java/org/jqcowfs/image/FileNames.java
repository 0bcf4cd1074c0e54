package org.jqcowfs.image;

import java.util.Optional;
import java.util.regex.Pattern;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.StorageOpener;

/**
 * Resolves file names stored in an image (backing file, external data file) the way QEMU does for
 * plain names: relative to the directory of the image that names them, never the working directory.
 * Pseudo-names that QEMU would parse ({@code json:...}, {@code protocol://...}, {@code nbd:...})
 * are refused, but for a URL stored in a local image that the opener reads ({@link
 * StorageOpener#absoluteName}: an overlay over a remote image), which the name policy then
 * confines; an absolute name in a remote image is refused (QEMU would open a local file), and so is
 * any URL there.
 */
public final class FileNames {
  private static final Pattern PROTOCOL = Pattern.compile("^[A-Za-z][A-Za-z0-9+.-]*:.*");

  private FileNames() {}

  /**
   * @param image where the image that stores the name is
   * @param name the stored name
   * @param field what the name is, for the message ("backing file", "external data file")
   * @param urls what reads URL names, or null when none are followed
   * @return the resolved location ({@link Location#resolve}), or the URL's
   * @throws ImageFormatException for an empty, {@code json:} or protocol name, or one the location
   *     cannot resolve
   */
  public static Location resolve(Location image, String name, String field, StorageOpener urls)
      throws ImageFormatException {
    if (name.isEmpty()) {
      throw new ImageFormatException(image, field + " name is empty");
    }
    if (name.startsWith("json:")) {
      throw new ImageFormatException(
          image, field + " name '" + name + "' is a json: pseudo-name, which is refused");
    }
    if (PROTOCOL.matcher(name).matches() && !name.startsWith("/")) {
      Optional<Location> url =
          urls != null && image.localPath().isPresent()
              ? urls.absoluteName(name)
              : Optional.empty();
      if (url.isPresent()) {
        return url.get();
      }
      throw new ImageFormatException(
          image, field + " name '" + name + "' names a protocol, which is refused");
    }
    if (name.startsWith("/") && image.localPath().isEmpty()) {
      throw new ImageFormatException(
          image,
          field
              + " name '"
              + name
              + "' is an absolute local path in a remote image, which is refused");
    }
    try {
      return image.resolve(name);
    } catch (IllegalArgumentException e) { // a name a remote location cannot hold
      throw new ImageFormatException(image, field + " name refused: " + e.getMessage());
    }
  }
}
