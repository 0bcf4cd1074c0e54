package org.jqcowfs.image;

import java.io.IOException;
import java.nio.file.Path;
import org.jqcowfs.storage.Location;

/**
 * An image that breaks the qcow2 format, or uses a feature jqcowfs refuses. The message names the
 * file, the field (or L1/L2 index) and the value. Thrown at open (the image is refused) or from a
 * read or block-status call (the affected range gives EIO).
 */
public class ImageFormatException extends IOException {
  private static final long serialVersionUID = 1L;

  /**
   * @param file the file being parsed
   * @param message what is wrong: field, value and place
   */
  public ImageFormatException(Path file, String message) {
    super(file + ": " + message);
  }

  /**
   * @param location where the image being parsed is
   * @param message what is wrong: field, value and place
   */
  public ImageFormatException(Location location, String message) {
    super(location + ": " + message);
  }

  /** Formats {@code value} as {@code 0x...}. */
  public static String hex(long value) {
    return "0x" + Long.toHexString(value);
  }
}
