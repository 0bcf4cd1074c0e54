package org.jqcowfs.qcow2.format;

import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.storage.Location;

/**
 * A header table (L1, refcount, snapshot) runs past the end of the file: refused for reading and
 * writing; a check reads past the end as zeros, as {@code qcow2_do_open} and QEMU's block layer let
 * it ({@link Header#decode(Location, java.nio.ByteBuffer, long, boolean)}).
 */
public final class TablePastEndException extends ImageFormatException {
  private static final long serialVersionUID = 1L;

  /**
   * @param file the image file
   * @param message the field, its value and the file's length
   */
  public TablePastEndException(Location file, String message) {
    super(file, message);
  }
}
