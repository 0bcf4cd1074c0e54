package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.atomic.AtomicReferenceArray;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.BitmapDirectory;
import org.jqcowfs.qcow2.format.BitmapDirectory.Bitmap;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.metadata.BitmapTables;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Storage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The persistent dirty bitmaps of a writable image, kept as QEMU keeps them ({@code
 * block/qcow2-bitmap.c} with the block layer's {@code bdrv_set_dirty}):
 *
 * <ul>
 *   <li>at open the directory and the tables of the enabled ("auto") bitmaps are read and checked
 *       ({@code qcow2_load_dirty_bitmaps}, {@code bitmap_table_load}), and those bitmaps are marked
 *       in use in the image, durably, before any write ({@code update_ext_header_and_dir_in_place}:
 *       autoclear bit cleared, directory written, bit set);
 *   <li>writes, write-zeroes and discards set their bits in memory, rounded out to each bitmap's
 *       granularity ({@link #mark});
 *   <li>at close ({@link #store}) the bits are merged into the bitmaps' data clusters: a table
 *       entry without a data cluster gets a new one, allocated through the refcounts, whose
 *       refcount is durable before the table names it; then the tables; in use is cleared last, as
 *       at open.
 * </ul>
 *
 * <p>An in-use bitmap stays inconsistent, so a crash at any instant leaves each enabled bitmap in
 * use or holding every write. Disabled bitmaps and bitmaps found in use (inconsistent, as QEMU
 * leaves them) are not touched.
 */
final class PersistentBitmaps {
  private static final Logger LOG = LoggerFactory.getLogger(Qcow2Writer.class);

  /**
   * One enabled bitmap: its table and the bits set since open, one cluster of them per table entry,
   * made when first set. Set without a lock from the writer's threads (a bit already set is only
   * read), so that concurrent writes do not queue on a monitor.
   */
  private static final class Tracked {
    final int index;
    final Bitmap bitmap;
    final long[] table;
    final AtomicReferenceArray<AtomicLongArray> chunks;
    boolean tableChanged;

    Tracked(int index, Bitmap bitmap, long[] table) {
      this.index = index;
      this.bitmap = bitmap;
      this.table = table;
      this.chunks = new AtomicReferenceArray<>(table.length);
    }

    /** The bits of table entry {@code i}, made on first use. */
    AtomicLongArray chunk(int i, int words) {
      AtomicLongArray c = chunks.get(i);
      if (c == null) {
        chunks.compareAndSet(i, null, new AtomicLongArray(words));
        c = chunks.get(i);
      }
      return c;
    }
  }

  private final Storage file;
  private final Header header;
  private final int cs;
  private final long virtualBytes;
  private final long autoclear;
  private final ByteBuffer directory;
  private final List<Tracked> tracked;

  /** Every bitmap of the directory as it was at open (empty without a directory). */
  private final List<Bitmap> all;

  /** Whether {@link #store} leaves every bitmap in use: a resize rewrites them after. */
  private boolean keepInUse;

  private final OverlapGuard guard;
  private volatile boolean stored;

  private PersistentBitmaps(
      Storage file,
      Header header,
      long autoclear,
      ByteBuffer directory,
      List<Tracked> tracked,
      List<Bitmap> all,
      OverlapGuard guard) {
    this.all = all;
    this.guard = guard;
    this.file = file;
    this.header = header;
    this.cs = (int) header.geometry().clusterSize();
    this.virtualBytes = header.virtualSize();
    this.autoclear = autoclear;
    this.directory = directory;
    this.tracked = tracked;
  }

  /**
   * Reads and checks the bitmaps of the image in {@code file}, whose header will have the autoclear
   * bits {@code autoclear}; records the directory and the enabled bitmaps' tables as metadata in
   * {@code guard}. Writes nothing: {@link #markInUse} does.
   *
   * @throws ImageFormatException if the directory or a table of an enabled bitmap is one QEMU
   *     refuses to load, or names clusters that are not the bitmap's alone (refcount other than 1,
   *     or other metadata): the image can still be opened read-only
   * @throws IOException if the file cannot be read or written
   */
  static PersistentBitmaps open(
      Storage file, Header header, long autoclear, Refcounts refcounts, OverlapGuard guard)
      throws IOException {
    ByteBuffer dir =
        (autoclear & Header.AUTOCLEAR_BITMAPS) == 0
            ? null
            : BitmapTables.directoryBytes(file, header);
    if (dir == null) {
      return new PersistentBitmaps(file, header, autoclear, null, List.of(), List.of(), guard);
    }
    List<Bitmap> bitmaps = BitmapTables.decode(file, header, dir);
    long dirOffset = header.bitmaps().directoryOffset();
    String hit = guard.overlap(dirOffset, dir.limit());
    if (hit != null) {
      throw refused(file, "the bitmap directory at " + hex(dirOffset) + " overlaps " + hit);
    }
    guard.addMetadata(dirOffset, dir.limit(), "the bitmap directory");
    int cs = (int) header.geometry().clusterSize();
    List<Tracked> tracked = new ArrayList<>();
    for (int i = 0; i < bitmaps.size(); i++) {
      Bitmap b = bitmaps.get(i);
      if (b.inUse()) {
        LOG.warn(
            "{}: bitmap '{}' is in use (inconsistent): left as it is", file.location(), b.name());
        continue;
      }
      if (!b.auto()) {
        continue; // disabled: writes do not change it
      }
      long[] table = BitmapTables.table(file, b);
      String what = "bitmap '" + b.name() + "'";
      checkOwn(file, refcounts, guard, b.tableOffset(), b.tableBytes(), what + ": its table");
      for (int e = 0; e < table.length; e++) {
        if (!BitmapDirectory.validTableEntry(table[e], cs)) {
          throw refused(file, what + ": table entry " + e + " is invalid: " + hex(table[e]));
        }
        long data = BitmapDirectory.dataOffset(table[e]);
        if (data != 0) {
          checkOwn(file, refcounts, guard, data, cs, what + ": table entry " + e);
        }
      }
      guard.addMetadata(b.tableOffset(), b.tableBytes(), "the table of " + what);
      tracked.add(new Tracked(i, b, table));
    }
    return new PersistentBitmaps(file, header, autoclear, dir, tracked, bitmaps, guard);
  }

  /** Whether the image has persistent bitmaps that writes keep (a consistent directory). */
  boolean any() {
    return !all.isEmpty();
  }

  /** The names of the bitmaps that were in use (inconsistent) before this writer opened. */
  List<String> inUseAtOpen() {
    return all.stream().filter(Bitmap::inUse).map(Bitmap::name).toList();
  }

  /**
   * Makes {@link #store} leave every bitmap in use, the disabled ones too (as QEMU marks every
   * bitmap it loads): a resize stores them anew at the new size ({@link BitmapEditor#resize}), and
   * until then no table of the old size may look consistent.
   */
  void keepInUse() throws IOException {
    keepInUse = true;
    if (stored && directory != null) { // stored already (amend): marked again before the resize
      writeDirectory(true);
    }
  }

  /** Marks the enabled bitmaps in use, durably; before the first write. */
  void markInUse() throws IOException {
    if (!tracked.isEmpty()) {
      writeDirectory(true);
    }
  }

  /** Refuses a range that the file does not hold, or that is not a bitmap's alone. */
  static void checkOwn(
      Storage file, Refcounts refcounts, OverlapGuard guard, long offset, long bytes, String what)
      throws IOException {
    if (offset > file.length() - bytes) {
      throw refused(file, what + " at " + hex(offset) + " passes the end of the file");
    }
    String hit = guard.overlap(offset, bytes);
    if (hit != null) {
      throw refused(file, what + " at " + hex(offset) + " overlaps " + hit);
    }
    int clusterBits = Long.numberOfTrailingZeros(guard.clusterBytes());
    for (long c = offset >>> clusterBits; c << clusterBits < offset + bytes; c++) {
      long refcount = refcounts.refcount(c);
      if (refcount != 1) {
        throw refused(
            file,
            what
                + " at "
                + hex(offset)
                + ": cluster "
                + hex(c << clusterBits)
                + " has refcount "
                + refcount
                + ", not 1");
      }
    }
  }

  private static ImageFormatException refused(Storage file, String why) {
    return new ImageFormatException(
        file.location(),
        "cannot keep the persistent dirty bitmaps: " + why + "; the image opens read-only");
  }

  /** Whether the image keeps its bitmaps: the autoclear bit for them stays set. */
  boolean kept() {
    return directory != null;
  }

  /**
   * Sets the bits of every enabled bitmap for {@code [guestOffset, guestOffset + bytes)}, rounded
   * out to its granularity (QEMU {@code bdrv_set_dirty}); called before the change is made.
   *
   * @throws IOException if the bitmaps were stored already (the image is closing)
   */
  void mark(long guestOffset, long bytes) throws IOException {
    if (tracked.isEmpty() || bytes <= 0) {
      return;
    }
    if (stored) {
      throw new IOException(file.location() + ": the image is closed");
    }
    long end = Math.min(virtualBytes, guestOffset + bytes);
    if (guestOffset >= end) {
      return;
    }
    for (Tracked t : tracked) {
      forEachChunk(
          t.table.length,
          cs,
          t.bitmap.granularityBits(),
          guestOffset,
          end,
          (chunk, from, to) -> {
            AtomicLongArray words = t.chunk(chunk, cs / 8);
            forEachWord(
                from,
                to,
                (w, mask) -> {
                  if ((words.get(w) & mask) != mask) {
                    words.getAndAccumulate(w, mask, (a, b) -> a | b);
                  }
                });
          });
    }
  }

  /** Bits {@code [from, to)} of table entry {@code chunk}'s cluster of bits. */
  @FunctionalInterface
  interface ChunkBits {
    void bits(int chunk, int from, int to);
  }

  /** Word {@code w} (bit k: word k / 64, bit k % 64) and the bits of it to set. */
  @FunctionalInterface
  interface WordMask {
    void mask(int w, long mask);
  }

  /**
   * Splits the bits of {@code [start, end)} at granularity {@code 2^granularityBits}, rounded out,
   * by table entry (a cluster of bits, {@code cs * 8}), leaving out entries at or past {@code
   * tableEntries}.
   */
  static void forEachChunk(
      long tableEntries, int cs, int granularityBits, long start, long end, ChunkBits sink) {
    long bitsPerChunk = cs * 8L;
    long first = start >>> granularityBits;
    long last = (end - 1) >>> granularityBits;
    for (long k = first; k <= last; ) {
      long chunk = k / bitsPerChunk;
      long chunkEnd = Math.min(last + 1, (chunk + 1) * bitsPerChunk);
      if (chunk < tableEntries) {
        sink.bits(
            (int) chunk, (int) (k - chunk * bitsPerChunk), (int) (chunkEnd - chunk * bitsPerChunk));
      }
      k = chunkEnd;
    }
  }

  /** Gives {@code sink} each word of bits {@code [from, to)} with the mask of those bits in it. */
  static void forEachWord(int from, int to, WordMask sink) {
    int w0 = from >>> 6;
    int w1 = (to - 1) >>> 6;
    long head = -1L << (from & 63);
    long tail = -1L >>> (63 - ((to - 1) & 63));
    if (w0 == w1) {
      sink.mask(w0, head & tail);
      return;
    }
    sink.mask(w0, head);
    for (int w = w0 + 1; w < w1; w++) {
      sink.mask(w, -1L);
    }
    sink.mask(w1, tail);
  }

  /**
   * Writes the bits set since open into the image and clears in use, in the order that keeps every
   * crash state safe: data clusters (new ones allocated), then {@code flush} (their refcounts and
   * bytes durable), then the tables that name new clusters (synced), then the directory as at open.
   * Call once, after the last write, with the writer's metadata flushed.
   *
   * @param cache the writer's metadata cache: allocation under its lock, and its flush
   * @throws IOException if the file cannot be read or written; the bitmaps stay in use
   */
  void store(MetadataCache cache) throws IOException {
    if (stored) {
      return;
    }
    stored = true;
    if (directory != null) { // from now on the bitmaps' clusters may be edited or freed
      guard.removeMetadata(header.bitmaps().directoryOffset());
      for (Tracked t : tracked) {
        guard.removeMetadata(t.bitmap.tableOffset());
      }
    }
    if (tracked.isEmpty() && !keepInUse) {
      return;
    }
    ByteBuffer cluster = ByteBuffer.allocate(cs).order(ByteOrder.LITTLE_ENDIAN);
    for (Tracked t : tracked) {
      for (int i = 0; i < t.table.length; i++) {
        AtomicLongArray words = t.chunks.get(i);
        if (words == null) {
          continue;
        }
        long data = BitmapDirectory.dataOffset(t.table[i]);
        if (data == 0 && BitmapDirectory.allOnes(t.table[i])) {
          continue; // every bit set already
        }
        cluster.clear();
        if (data != 0) {
          file.readFully(cluster, data);
        } else {
          Arrays.fill(cluster.array(), (byte) 0);
        }
        for (int w = 0; w < words.length(); w++) {
          cluster.putLong(w * 8, cluster.getLong(w * 8) | words.get(w));
        }
        if (data == 0) {
          data = cache.allocate(1);
          t.table[i] = data;
          t.tableChanged = true;
        }
        file.write(cluster.clear(), data);
      }
    }
    cache.flush();
    boolean tables = false;
    for (Tracked t : tracked) {
      if (t.tableChanged) {
        ByteBuffer b = ByteBuffer.allocate(t.table.length * 8);
        b.asLongBuffer().put(t.table);
        file.write(b, t.bitmap.tableOffset());
        tables = true;
      }
    }
    if (tables) {
      file.flush();
    }
    writeDirectory(keepInUse);
  }

  /**
   * Writes the directory with the enabled bitmaps in use or not, in place, as QEMU's {@code
   * update_ext_header_and_dir_in_place}: the header's bitmaps bit cleared (synced), so that a torn
   * directory is never trusted; the directory (synced); the bit set again (synced).
   */
  private void writeDirectory(boolean inUse) throws IOException {
    for (Tracked t : tracked) {
      int flags = t.bitmap.flags() & ~BitmapDirectory.FLAG_IN_USE;
      BitmapDirectory.setFlags(
          directory, t.index, inUse ? flags | BitmapDirectory.FLAG_IN_USE : flags);
    }
    for (int i = 0; keepInUse && i < all.size(); i++) { // the disabled ones too
      BitmapDirectory.setFlags(directory, i, all.get(i).flags() | BitmapDirectory.FLAG_IN_USE);
    }
    HeaderWriter.writeAutoclearFeatures(file, autoclear & ~Header.AUTOCLEAR_BITMAPS);
    file.write(directory.duplicate().rewind(), header.bitmaps().directoryOffset());
    file.flush();
    HeaderWriter.writeAutoclearFeatures(file, autoclear);
  }
}
