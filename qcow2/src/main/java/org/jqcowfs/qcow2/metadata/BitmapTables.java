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
    ByteBuffer dir = directoryBytes(file, header);
    return dir == null ? List.of() : decode(file, header, dir);
  }

  /**
   * The bytes of the bitmap directory as stored (position 0, limit its length), or null without a
   * bitmaps extension or with a stale one.
   *
   * @throws ImageFormatException if the directory passes the end of the file
   * @throws IOException if the file cannot be read
   */
  public static ByteBuffer directoryBytes(Storage file, Header header) throws IOException {
    Header.Bitmaps ext = header.bitmaps();
    if (ext == null || !ext.consistent()) {
      return null;
    }
    if (ext.directoryOffset() > file.length() - ext.directoryBytes()) {
      throw new ImageFormatException(
          file.location(), "bitmap directory passes the end of the file");
    }
    ByteBuffer dir = ByteBuffer.allocate((int) ext.directoryBytes());
    file.readFully(dir, ext.directoryOffset());
    return dir.flip();
  }

  /**
   * {@link BitmapDirectory#decode} of {@code dir}, the directory of the image in {@code file}.
   *
   * @throws ImageFormatException if QEMU would refuse to load it, naming the image and the reason
   */
  public static List<Bitmap> decode(Storage file, Header header, ByteBuffer dir)
      throws ImageFormatException {
    try {
      return BitmapDirectory.decode(
          dir.duplicate(),
          header.bitmaps().count(),
          (int) header.geometry().clusterSize(),
          header.size());
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

  /** A range of the disk and whether the bitmap marks it dirty. */
  public interface ExtentSink {
    /**
     * @param start guest offset, bytes
     * @param length bytes
     */
    void extent(long start, long length, boolean dirty) throws IOException;
  }

  /**
   * As {@link #walk(Storage, Header, Bitmap, long, ExtentSink)} for the bitmap named {@code name}.
   *
   * @throws ImageFormatException if there is no such bitmap, or it is in use or damaged, naming it
   * @throws IOException if the file cannot be read
   */
  public static void walk(
      Storage file, Header header, String name, long virtualBytes, ExtentSink sink)
      throws IOException {
    Bitmap bitmap =
        directory(file, header).stream()
            .filter(b -> b.name().equals(name))
            .findFirst()
            .orElseThrow(
                () -> new ImageFormatException(file.location(), "no bitmap '" + name + "'"));
    walk(file, header, bitmap, virtualBytes, sink);
  }

  /**
   * Walks {@code bitmap}'s bits over a disk of {@code virtualBytes}, giving {@code sink} runs that
   * tile it, alternating clean and dirty, in guest order: bit k of the bitmap (byte k / 8, bit k %
   * 8, least significant first) covers the guest bytes from k granularities on (spec: "Bitmap
   * table"). One data cluster is read at a time.
   *
   * @throws ImageFormatException if the bitmap is in use (its bits cannot be trusted), a table
   *     entry is invalid, or a data cluster passes the end of the file, naming the bitmap
   * @throws IOException if the file cannot be read, or as {@code sink} throws
   */
  public static void walk(
      Storage file, Header header, Bitmap bitmap, long virtualBytes, ExtentSink sink)
      throws IOException {
    if (bitmap.inUse()) {
      throw new ImageFormatException(
          file.location(),
          "bitmap '"
              + bitmap.name()
              + "' is in use (inconsistent: a writer did not finish with it), its bits cannot be"
              + " trusted");
    }
    long[] table = table(file, bitmap);
    int clusterBytes = (int) header.geometry().clusterSize();
    long gran = bitmap.granularity();
    long perEntry = (long) clusterBytes * 8 * gran; // guest bytes one table entry covers
    Run run = new Run(sink);
    ByteBuffer cluster = ByteBuffer.allocate(clusterBytes);
    for (int i = 0; i < table.length && (long) i * perEntry < virtualBytes; i++) {
      long entry = table[i];
      long base = i * perEntry;
      long end = Math.min(virtualBytes, base + perEntry);
      if (!BitmapDirectory.validTableEntry(entry, clusterBytes)) {
        throw new ImageFormatException(
            file.location(),
            "bitmap '" + bitmap.name() + "': table entry " + i + " is invalid: " + hex(entry));
      }
      long data = BitmapDirectory.dataOffset(entry);
      if (data == 0) {
        run.add(base, end - base, BitmapDirectory.allOnes(entry));
        continue;
      }
      if (data > file.length() - clusterBytes) {
        throw new ImageFormatException(
            file.location(),
            "bitmap '" + bitmap.name() + "': data cluster " + hex(data) + " passes the end");
      }
      file.readFully(cluster.clear(), data);
      for (long pos = base; pos < end; ) {
        int bit = (int) ((pos - base) / gran);
        boolean dirty = (cluster.get(bit >>> 3) >>> (bit & 7) & 1) != 0;
        long next = Math.min(end, pos + gran);
        run.add(pos, next - pos, dirty);
        pos = next;
      }
    }
    if ((long) table.length * perEntry < virtualBytes) {
      run.add(table.length * perEntry, virtualBytes - table.length * perEntry, false);
    }
    run.flush();
  }

  /** Merges neighbouring ranges of one kind before they reach the sink. */
  private static final class Run {
    private final ExtentSink sink;
    private long start;
    private long length;
    private boolean dirty;

    Run(ExtentSink sink) {
      this.sink = sink;
    }

    void add(long at, long bytes, boolean isDirty) throws IOException {
      if (length > 0 && isDirty == dirty) {
        length += bytes;
        return;
      }
      flush();
      start = at;
      length = bytes;
      dirty = isDirty;
    }

    void flush() throws IOException {
      if (length > 0) {
        sink.extent(start, length, dirty);
        length = 0;
      }
    }
  }

  private static String hex(long v) {
    return "0x" + Long.toHexString(v);
  }
}
