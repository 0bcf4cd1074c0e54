package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.BitmapDirectory;
import org.jqcowfs.qcow2.format.BitmapDirectory.Bitmap;
import org.jqcowfs.qcow2.format.BitmapOp;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.metadata.BitmapTables;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Storage;

/**
 * Edits the persistent dirty bitmaps of a qcow2 image as {@code qemu-img bitmap} does (QEMU {@code
 * img_bitmap} with the {@code block-dirty-bitmap-*} commands, then {@code
 * qcow2_store_persistent_dirty_bitmaps}): the operations run in order on the bitmaps in memory;
 * then every changed bitmap gets a new table and data clusters, a new directory is written, all of
 * it allocated through the refcounts and made durable before the header names it ({@code
 * update_ext_header_and_dir}); the old directory and the changed bitmaps' old clusters are freed
 * last. A crash leaves the old bitmaps, or the new ones, and at worst leaked clusters.
 */
final class BitmapEditor {
  /** QEMU's QCOW2_MAX_BITMAPS. */
  private static final int MAX_BITMAPS = 65535;

  /** One bitmap as edited: its entry, and its bits (per table entry) once loaded or changed. */
  private static final class Model {
    final String name;
    final int granularityBits;
    int flags;
    final Bitmap old;
    Map<Integer, long[]> chunks; // null: the data as stored

    Model(String name, int granularityBits, int flags, Bitmap old) {
      this.name = name;
      this.granularityBits = granularityBits;
      this.flags = flags;
      this.old = old;
    }
  }

  private final Storage file;
  private static final String EDIT_INSTEAD = "edit the bitmaps with qemu-img bitmap";

  private final Header header;
  private final int cs;
  private final long virtualBytes;
  private final Refcounts refcounts;
  private final MetadataCache cache;
  private final OverlapGuard guard;
  private final List<Model> models = new ArrayList<>();
  private final List<Bitmap> before;

  BitmapEditor(Storage file, Refcounts refcounts, MetadataCache cache, OverlapGuard guard)
      throws IOException {
    this.file = file;
    this.header = MetadataIo.readHeader(file);
    this.cs = (int) header.geometry().clusterSize();
    this.virtualBytes = header.virtualSize();
    this.refcounts = refcounts;
    this.cache = cache;
    this.guard = guard;
    if (header.version() < 3) {
      throw new ImageFormatException(
          file.location(), "cannot store dirty bitmaps in qcow2 v2 files");
    }
    HeaderWriter.checkRewritable(file, header, EDIT_INSTEAD);
    this.before = BitmapTables.directory(file, header);
    for (Bitmap b : before) {
      models.add(new Model(b.name(), b.granularityBits(), b.flags(), b));
    }
  }

  /**
   * The operations of {@code qemu-img bitmap} on one bitmap, applied in order, then stored.
   *
   * @throws IllegalArgumentException as QEMU refuses an operation ("Operation add on bitmap b
   *     failed: Bitmap already exists: b"); nothing is written then
   * @throws IOException if the image cannot be read or written
   */
  void apply(String name, List<BitmapOp> ops) throws IOException {
    for (BitmapOp op : ops) {
      try {
        applyOne(name, op);
      } catch (IllegalArgumentException e) {
        throw new IllegalArgumentException(
            "Operation " + op.verb() + " on bitmap " + name + " failed: " + e.getMessage(), e);
      }
    }
    store();
  }

  private void applyOne(String name, BitmapOp op) throws IOException {
    switch (op.kind()) {
      case ADD -> {
        if (find(name) != null) {
          throw new IllegalArgumentException("Bitmap already exists: " + name);
        }
        long g = op.granularity() != 0 ? op.granularity() : Math.min(65536, Math.max(4096, cs));
        if (g < 512 || g > (1L << 31) || Long.bitCount(g) != 1) {
          throw new IllegalArgumentException(
              "Granularity must be power of 2 between 512 and 2147483648");
        }
        if (name.getBytes(StandardCharsets.UTF_8).length > 1023 || name.isEmpty()) {
          throw new IllegalArgumentException("Bitmap name must be 1 to 1023 bytes");
        }
        if (models.size() >= MAX_BITMAPS) {
          throw new IllegalArgumentException("Too many persistent bitmaps");
        }
        Model m =
            new Model(
                name,
                Long.numberOfTrailingZeros(g),
                op.disabled() ? 0 : BitmapDirectory.FLAG_AUTO,
                null);
        m.chunks = new TreeMap<>();
        if ((tableEntries(m) * cs) > 0x20000000L) {
          throw new IllegalArgumentException("Too large bitmap for this granularity");
        }
        models.add(m);
      }
      case REMOVE -> models.remove(existing(name, false));
      case CLEAR -> existing(name, true).chunks = new TreeMap<>();
      case ENABLE -> existing(name, true).flags |= BitmapDirectory.FLAG_AUTO;
      case DISABLE -> existing(name, true).flags &= ~BitmapDirectory.FLAG_AUTO;
      case MERGE -> {
        Model target = existing(name, true);
        load(target);
        if (op.external() != null) {
          op.external().dirtyRanges((start, length) -> setRange(target, start, length));
        } else {
          Model source = existing(op.source(), true);
          load(source);
          forEachDirty(source, (start, length, dirty) -> setRange(target, start, length));
        }
      }
    }
  }

  /**
   * Stores every bitmap anew for the image's (new) size, its bits kept up to the end and none past
   * it, and marks them consistent: what a resize leaves ({@code bdrv_dirty_bitmap_truncate}, then
   * {@code qcow2_store_persistent_dirty_bitmaps}); the writer left them in use until now.
   *
   * @throws IOException if the image cannot be read or written
   */
  void resize() throws IOException {
    for (Model m : models) {
      load(m);
      m.flags &= ~BitmapDirectory.FLAG_IN_USE;
      long bits = (virtualBytes + (1L << m.granularityBits) - 1) >>> m.granularityBits;
      long bitsPerChunk = cs * 8L;
      m.chunks.keySet().removeIf(chunk -> chunk * bitsPerChunk >= bits);
      long[] last = m.chunks.get((int) (bits / bitsPerChunk));
      if (last != null) { // the bits past the end in the last chunk
        long from = bits % bitsPerChunk;
        int w = (int) (from >>> 6);
        last[w] &= (1L << (from & 63)) - 1;
        Arrays.fill(last, w + 1, last.length, 0);
      }
    }
    store();
  }

  private Model find(String name) {
    for (Model m : models) {
      if (m.name.equals(name)) {
        return m;
      }
    }
    return null;
  }

  /** The bitmap {@code name}; refused if absent, or (when {@code usable}) in use. */
  private Model existing(String name, boolean usable) {
    Model m = find(name);
    if (m == null) {
      throw new IllegalArgumentException("Dirty bitmap '" + name + "' not found");
    }
    if (usable && (m.flags & BitmapDirectory.FLAG_IN_USE) != 0) {
      throw new IllegalArgumentException(
          "Bitmap '" + name + "' is inconsistent and cannot be used; remove it");
    }
    return m;
  }

  /** Entries of {@code m}'s table: one data cluster per {@code cs * 8} bits. */
  private long tableEntries(Model m) {
    long bits = (virtualBytes + (1L << m.granularityBits) - 1) >>> m.granularityBits;
    long bytes = (bits + 7) / 8;
    return Math.max(1, (bytes + cs - 1) / cs);
  }

  /** Reads {@code m}'s bits into memory, once. */
  private void load(Model m) throws IOException {
    if (m.chunks != null) {
      return;
    }
    m.chunks = new TreeMap<>();
    long[] table = checkedTable(m.old);
    ByteBuffer cluster = ByteBuffer.allocate(cs).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < table.length; i++) {
      long data = BitmapDirectory.dataOffset(table[i]);
      long[] words = new long[cs / 8];
      if (data != 0) {
        file.readFully(cluster.clear(), data);
        cluster.flip().asLongBuffer().get(words);
      } else if (BitmapDirectory.allOnes(table[i])) {
        Arrays.fill(words, -1L);
      } else {
        continue;
      }
      m.chunks.put(i, words);
    }
  }

  /** The table of {@code b}, every entry valid and every cluster the bitmap's alone. */
  private long[] checkedTable(Bitmap b) throws IOException {
    long[] table = BitmapTables.table(file, b);
    String what = "bitmap '" + b.name() + "'";
    PersistentBitmaps.checkOwn(
        file, refcounts, guard, b.tableOffset(), b.tableBytes(), what + ": its table");
    for (int e = 0; e < table.length; e++) {
      if (!BitmapDirectory.validTableEntry(table[e], cs)) {
        throw new ImageFormatException(
            file.location(), what + ": table entry " + e + " is invalid: " + hex(table[e]));
      }
      long data = BitmapDirectory.dataOffset(table[e]);
      if (data != 0) {
        PersistentBitmaps.checkOwn(file, refcounts, guard, data, cs, what + ": table entry " + e);
      }
    }
    return table;
  }

  /** Sets {@code m}'s bits for {@code [start, start + length)}, rounded out. */
  private void setRange(Model m, long start, long length) {
    long end = Math.min(virtualBytes, start + length);
    if (start >= end) {
      return;
    }
    PersistentBitmaps.forEachChunk(
        tableEntries(m),
        cs,
        m.granularityBits,
        start,
        end,
        (chunk, from, to) -> {
          long[] words = m.chunks.computeIfAbsent(chunk, c -> new long[cs / 8]);
          PersistentBitmaps.forEachWord(from, to, (w, mask) -> words[w] |= mask);
        });
  }

  /** Gives {@code sink} the dirty ranges of {@code m} (loaded), one granule or run at a time. */
  private void forEachDirty(Model m, BitmapTables.ExtentSink sink) throws IOException {
    long g = 1L << m.granularityBits;
    long bitsPerChunk = cs * 8L;
    for (Map.Entry<Integer, long[]> e : m.chunks.entrySet()) {
      long[] words = e.getValue();
      for (int w = 0; w < words.length; w++) {
        long v = words[w];
        while (v != 0) {
          int bit = Long.numberOfTrailingZeros(v);
          v &= v - 1;
          long k = e.getKey() * bitsPerChunk + w * 64L + bit;
          sink.extent(k * g, g, true);
        }
      }
    }
  }

  /**
   * Writes the edited bitmaps: changed ones get a new table and data clusters, then a new
   * directory; all synced with their refcounts before the header names the directory; then the old
   * clusters are freed.
   */
  private void store() throws IOException {
    List<long[]> frees = new ArrayList<>(); // {offset, bytes}
    ByteBuffer dir = ByteBuffer.allocate(directoryBytes());
    ByteBuffer cluster = ByteBuffer.allocate(cs).order(ByteOrder.LITTLE_ENDIAN);
    for (Model m : models) {
      long tableOffset;
      long entries;
      if (m.chunks == null) {
        tableOffset = m.old.tableOffset();
        entries = m.old.tableEntries();
      } else {
        entries = tableEntries(m);
        long[] table = new long[(int) entries];
        for (Map.Entry<Integer, long[]> e : m.chunks.entrySet()) {
          long[] words = e.getValue();
          if (e.getKey() >= entries || Arrays.stream(words).allMatch(w -> w == 0)) {
            continue; // QEMU stores an all-zero cluster as entry 0
          }
          cluster.clear().asLongBuffer().put(words);
          long data = cache.allocate(1);
          file.write(cluster.clear(), data);
          table[e.getKey()] = data;
        }
        int tableClusters = (int) ((entries * 8 + cs - 1) / cs);
        tableOffset = cache.allocate(tableClusters);
        ByteBuffer t = ByteBuffer.allocate(tableClusters * cs);
        t.asLongBuffer().put(table);
        file.write(t, tableOffset);
        if (m.old != null) {
          addFrees(m.old, frees);
        }
      }
      putEntry(dir, m, tableOffset, (int) entries);
    }
    for (Bitmap b : before) {
      if (models.stream().noneMatch(m -> m.old == b)) {
        addFrees(b, frees); // removed
      }
    }
    Header.Bitmaps ext = null;
    if (!models.isEmpty()) {
      int dirClusters = (dir.capacity() + cs - 1) / cs;
      long dirOffset = cache.allocate(dirClusters);
      ByteBuffer d = ByteBuffer.allocate(dirClusters * cs).put(dir.array());
      file.write(d.clear(), dirOffset);
      ext = new Header.Bitmaps(models.size(), dir.capacity(), dirOffset, true);
    }
    cache.flush(); // the new clusters' refcounts and bytes durable before the header names them
    Header now = MetadataIo.readHeader(file); // the refcount table may have moved
    HeaderWriter.checkRewritable(file, now, EDIT_INSTEAD);
    if (header.bitmaps() != null) {
      frees.add(new long[] {header.bitmaps().directoryOffset(), header.bitmaps().directoryBytes()});
    }
    long autoclear =
        ext != null
            ? now.autoclearFeatures() | Header.AUTOCLEAR_BITMAPS
            : now.autoclearFeatures() & ~Header.AUTOCLEAR_BITMAPS;
    HeaderWriter.write(file, now.withBitmaps(autoclear, ext)); // one write, synced, as QEMU's

    cache.lock().lock();
    try {
      for (long[] f : frees) {
        refcounts.freeLater(f[0], f[1]);
      }
    } finally {
      cache.lock().unlock();
    }
    cache.flush();
  }

  /** Frees, later, the table and data clusters of {@code b} (already checked to be its own). */
  private void addFrees(Bitmap b, List<long[]> frees) throws IOException {
    long[] table = checkedTable(b);
    frees.add(new long[] {b.tableOffset(), b.tableBytes()});
    for (long e : table) {
      if (BitmapDirectory.dataOffset(e) != 0) {
        frees.add(new long[] {BitmapDirectory.dataOffset(e), cs});
      }
    }
  }

  /** The directory's bytes: each entry 24 bytes and its name, padded to 8. */
  private int directoryBytes() {
    int bytes = 0;
    for (Model m : models) {
      bytes += (24 + m.name.getBytes(StandardCharsets.UTF_8).length + 7) & ~7;
    }
    return bytes;
  }

  /** Appends {@code m}'s directory entry (spec: "Bitmap directory"). */
  private static void putEntry(ByteBuffer dir, Model m, long tableOffset, int entries) {
    byte[] name = m.name.getBytes(StandardCharsets.UTF_8);
    int at = dir.position();
    dir.putLong(tableOffset)
        .putInt(entries)
        .putInt(m.flags)
        .put((byte) 1) // type: dirty tracking bitmap
        .put((byte) m.granularityBits)
        .putShort((short) name.length)
        .putInt(0) // no extra data
        .put(name);
    dir.position(at + ((24 + name.length + 7) & ~7));
  }
}
