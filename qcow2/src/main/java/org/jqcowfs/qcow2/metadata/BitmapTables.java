package org.jqcowfs.qcow2.metadata;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.BitmapDirectory;
import org.jqcowfs.qcow2.format.BitmapDirectory.Bitmap;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.storage.Storage;

/**
 * Reads the persistent dirty bitmaps' metadata of a qcow2 image: the bitmap directory ({@code
 * bitmap_list_load}) and a bitmap's table ({@code bitmap_table_load}), QEMU {@code
 * block/qcow2-bitmap.c}. Sizes are bounded before anything is allocated: the directory by the
 * header's checks (at most 64 MiB), a table by the directory's (at most 512 MiB of bitmap data, so
 * at most 8 MiB of table at 512-byte clusters).
 */
public final class BitmapTables {
  private BitmapTables() {}

  /**
   * The bitmaps of the image in {@code file}: none without a bitmaps extension or with a stale one
   * (autoclear bit clear, as QEMU ignores it).
   *
   * @throws ImageFormatException if the directory passes the end of the file or is one QEMU refuses
   *     to load ({@link BitmapDirectory#decode}), naming the image and QEMU's reason
   * @throws IOException if the file cannot be read
   */
  public static List<Bitmap> directory(Storage file, Header header) throws IOException {
    Header.Bitmaps ext = header.bitmaps();
    if (ext == null || !ext.consistent()) {
      return List.of();
    }
    if (ext.directoryOffset() > file.length() - ext.directoryBytes()) {
      throw new ImageFormatException(
          file.location(), "bitmap directory passes the end of the file");
    }
    ByteBuffer dir = ByteBuffer.allocate((int) ext.directoryBytes());
    file.readFully(dir, ext.directoryOffset());
    try {
      return BitmapDirectory.decode(
          dir.flip(), ext.count(), (int) header.geometry().clusterSize(), header.size());
    } catch (BitmapDirectory.InvalidException e) {
      throw new ImageFormatException(file.location(), "bitmap directory: " + e.getMessage());
    }
  }

  /**
   * The entries of {@code bitmap}'s table, as stored (check them with {@link
   * BitmapDirectory#validTableEntry}).
   *
   * @throws ImageFormatException if the table passes the end of the file, naming the bitmap
   * @throws IOException if the file cannot be read
   */
  public static long[] table(Storage file, Bitmap bitmap) throws IOException {
    if (bitmap.tableOffset() > file.length() - bitmap.tableBytes()) {
      throw new ImageFormatException(
          file.location(), "bitmap '" + bitmap.name() + "': its table passes the end of the file");
    }
    return MetadataIo.readWords(file, bitmap.tableOffset(), bitmap.tableEntries());
  }
}
