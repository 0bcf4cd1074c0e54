package org.jqcowfs.qcow2.metadata;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.RefcountBlock;
import org.jqcowfs.storage.Storage;

/**
 * The refcounts of one image (spec section 4; QEMU {@code qcow2-refcount.c}): reads them, and for a
 * writer, allocates clusters and counts their references. Refcount blocks are cached; increments
 * stay in memory ({@link #writeDirty} writes them), decrements wait in a list until the references
 * they drop are gone from disk ({@link #applyFrees}). A new refcount block and a grown refcount
 * table are written and synced at once, as QEMU's {@code alloc_refcount_block} and {@code
 * qcow2_refcount_area} do, so the refcount table in memory is always the one on disk.
 *
 * <p>Not thread-safe: a writer calls it under its metadata lock; a check makes its own.
 */
public final class Refcounts {
  /** {@code REFT_OFFSET_MASK}. */
  public static final long REFT_OFFSET_MASK = 0xfffffffffffffe00L;

  /** {@code REFT_RESERVED_MASK}: bits 0-8. */
  public static final long REFT_RESERVED_MASK = 0x1ffL;

  /** Clean refcount blocks kept cached beyond the dirty ones, in bytes. */
  private static final long CLEAN_CACHE_BYTES = 4L << 20;

  private final Storage file;
  private final int clusterBits;
  private final long clusterSize;
  private final int bits;
  private final long entriesPerBlock;
  private final int cleanCapacity;
  private long[] table;
  private long tableOffset;
  private final Map<Long, Block> blocks = new LinkedHashMap<>(16, 0.75f, true);

  private boolean zerosPastEnd;

  /** Table indexes of blocks made since the last flush, whose table entries are not written. */
  private final List<Integer> newEntries = new ArrayList<>();

  private final List<long[]> frees = new ArrayList<>();
  private MetadataSink sink;
  private long freeHint;

  /** Where {@link #newBlock} looks for a free cluster first. */
  private long newBlockFrom;

  /** Where the next compressed stream may start ({@link #allocateBytes}); 0: in a new cluster. */
  private long freeByteOffset;

  private static final class Block {
    final ByteBuffer data;
    boolean dirty;

    Block(ByteBuffer data) {
      this.data = data;
    }
  }

  public Refcounts(Storage file, Header header) throws IOException {
    this.file = file;
    this.clusterBits = header.clusterBits();
    this.clusterSize = header.clusterSize();
    this.bits = header.refcountBits();
    this.entriesPerBlock = clusterSize * 8 / bits;
    this.cleanCapacity = (int) Math.max(8, CLEAN_CACHE_BYTES / clusterSize);
    this.tableOffset = header.refcountTableOffset();
    int entries = (int) (header.refcountTableClusters() * clusterSize / 8);
    table = MetadataIo.readWordsZeroPastEnd(file, tableOffset, entries); // only a check's can
  }

  /** A block past the end of the file reads as zeros (a check's view, as QEMU reads it). */
  public void readPastEndAsZeros() {
    zerosPastEnd = true;
  }

  /** Tells {@code s} of refcount metadata that this instance adds or drops. */
  public void setMetadataSink(MetadataSink s) {
    this.sink = s;
  }

  /** The refcount table's entries as they are now (on disk too). */
  public long[] table() {
    return table;
  }

  /**
   * The refcount of host cluster {@code clusterIndex} (QEMU {@code qcow2_get_refcount}); 0 past the
   * table or where no refcount block is allocated.
   *
   * @throws ImageFormatException on an unaligned or out-of-file refcount block
   */
  public long refcount(long clusterIndex) throws IOException {
    Block b = block(clusterIndex / entriesPerBlock, false);
    return b == null ? 0 : RefcountBlock.get(b.data, bits, clusterIndex % entriesPerBlock);
  }

  /**
   * Allocates {@code clusters} consecutive free host clusters and sets their refcounts to 1 (QEMU
   * {@code qcow2_alloc_clusters}: {@code alloc_clusters_noref}, then {@code update_refcount}).
   *
   * @return the host offset in bytes of the first
   * @throws IOException if the file would outgrow the format's host offsets or the refcount table
   *     its limit, or a refcount block cannot be read or written
   */
  public long allocate(int clusters) throws IOException {
    long start = freeHint;
    long firstFree = -1;
    while (true) {
      long run = 0;
      long c = start;
      while (run < clusters) {
        if (c >= Header.MAX_HOST_OFFSET >>> clusterBits) {
          throw new IOException(
              file.location() + ": no free host cluster below the format's limit of 2^56 bytes");
        }
        if (refcount(c) == 0) {
          run++;
          firstFree = firstFree < 0 ? c : firstFree;
        } else {
          run = 0;
          start = c + 1;
        }
        c++;
      }
      // The refcount blocks of the range may have to be made first, and may take its clusters.
      boolean changed = false;
      long lastBlock = (start + clusters - 1) / entriesPerBlock;
      for (long t = start / entriesPerBlock; t <= lastBlock; t++) {
        if (block(t, false) == null) {
          newBlockFrom = start + clusters; // after the run, as QEMU's layout has it
          block(t, true);
          changed = true;
        }
      }
      if (!changed) {
        break;
      }
    }
    newBlockFrom = 0;
    for (long c = start; c < start + clusters; c++) {
      set(c, 1);
    }
    // Free clusters before the run (too few in a row) stay for later, smaller allocations.
    freeHint = firstFree < start ? firstFree : start + clusters;
    return start << clusterBits;
  }

  /**
   * Allocates {@code bytes} (less than a cluster) for a compressed cluster's stream, packed after
   * the previous one (QEMU {@code qcow2_alloc_bytes}): in the rest of the cluster the last one
   * ended in, running on into the next cluster when that one is allocated right after it, or at the
   * start of a new cluster. Every cluster the range touches gains one reference.
   *
   * @return the host offset in bytes of the range (not aligned)
   * @throws IOException as {@link #allocate}
   */
  public long allocateBytes(int bytes) throws IOException {
    if (bytes <= 0 || bytes >= clusterSize) {
      throw new IllegalArgumentException("compressed bytes out of range: " + bytes);
    }
    long offset = freeByteOffset;
    if (offset != 0 && refcount(offset >>> clusterBits) >= maxRefcount()) {
      offset = 0; // the cluster cannot take another reference
    }
    long freeInCluster = offset == 0 ? 0 : clusterSize - (offset & (clusterSize - 1));
    if (offset == 0 || freeInCluster < bytes) {
      long fresh = allocate(1); // its refcount is the new range's reference
      if (offset != 0 && ((offset + clusterSize - 1) & -clusterSize) == fresh) {
        add(offset >>> clusterBits, 1); // the range starts in the cluster before
      } else {
        offset = fresh;
      }
    } else {
      add(offset >>> clusterBits, 1);
    }
    freeByteOffset = ((offset + bytes) & (clusterSize - 1)) == 0 ? 0 : offset + bytes;
    return offset;
  }

  /**
   * Adds {@code n} references to host cluster {@code clusterIndex} (QEMU {@code
   * qcow2_update_cluster_refcount}); the caller has checked the width ({@link #maxRefcount}).
   */
  public void add(long clusterIndex, int n) throws IOException {
    set(clusterIndex, refcount(clusterIndex) + n);
  }

  /** The largest refcount the width holds ({@code s->refcount_max}). */
  public long maxRefcount() {
    return bits == 64 ? Long.MAX_VALUE : (1L << bits) - 1;
  }

  /**
   * Drops one reference to each cluster holding {@code [hostOffset, hostOffset + bytes)}, once
   * {@link #applyFrees} is called: after the references are gone from the disk (QEMU orders its
   * refcount cache after the L2 cache for the same reason). Until then the clusters stay in use.
   */
  public void freeLater(long hostOffset, long bytes) {
    frees.add(new long[] {hostOffset, bytes});
  }

  /**
   * Drops one reference at once from each cluster of {@code [hostOffset, hostOffset + bytes)}: for
   * clusters this writer allocated and nothing references, after a failed data write.
   */
  public void freeNow(long hostOffset, long bytes) throws IOException {
    decrement(hostOffset, bytes);
  }

  /** Whether decrements wait for {@link #applyFrees}. */
  public boolean hasFrees() {
    return !frees.isEmpty();
  }

  /**
   * Applies the waiting decrements in memory (their blocks become dirty).
   *
   * @throws ImageFormatException if a refcount would drop below zero (the image is corrupt)
   */
  public void applyFrees() throws IOException {
    List<long[]> todo = new ArrayList<>(frees);
    frees.clear();
    for (long[] f : todo) {
      decrement(f[0], f[1]);
    }
  }

  private void decrement(long hostOffset, long bytes) throws IOException {
    for (long c = hostOffset >>> clusterBits; c <= (hostOffset + bytes - 1) >>> clusterBits; c++) {
      long now = refcount(c);
      if (now == 0) {
        throw new ImageFormatException(
            file.location(),
            "refcount of host cluster " + hex(c << clusterBits) + " would drop below 0");
      }
      set(c, now - 1);
      if (now == 1) {
        freeHint = Math.min(freeHint, c);
      }
    }
  }

  /** Whether a refcount block changed in memory since {@link #writeDirty}. */
  public boolean hasDirty() {
    if (!newEntries.isEmpty()) {
      return true;
    }
    for (Block b : blocks.values()) {
      if (b.dirty) {
        return true;
      }
    }
    return false;
  }

  /** Writes the changed refcount blocks (not synced: the caller flushes the file). */
  public void writeDirty() throws IOException {
    for (Map.Entry<Long, Block> e : blocks.entrySet()) {
      Block b = e.getValue();
      if (b.dirty) {
        file.write(b.data.duplicate().clear(), e.getKey());
        b.dirty = false;
      }
    }
    evictClean();
  }

  /**
   * Sets the refcount of a cluster whose refcount block exists (a leak repair).
   *
   * @throws IllegalStateException if the cluster has no refcount block
   */
  public void setExisting(long clusterIndex, long value) throws IOException {
    if (block(clusterIndex / entriesPerBlock, false) == null) {
      throw new IllegalStateException("no refcount block for cluster " + clusterIndex);
    }
    set(clusterIndex, value);
  }

  private void set(long clusterIndex, long value) throws IOException {
    Block b = block(clusterIndex / entriesPerBlock, true);
    RefcountBlock.put(b.data, bits, clusterIndex % entriesPerBlock, value);
    b.dirty = true;
  }

  /**
   * The refcount block of table index {@code t}; if there is none, null, or with {@code create} a
   * new one made and synced (QEMU {@code alloc_refcount_block}), growing the table when {@code t}
   * lies past it.
   */
  private Block block(long t, boolean create) throws IOException {
    if (t >= table.length) {
      if (!create) {
        return null;
      }
      growTable(t);
    }
    long word = table[(int) t];
    long offset = word & REFT_OFFSET_MASK;
    if (offset == 0) {
      if (!create) {
        return null;
      }
      return newBlock(t);
    }
    Block b = blocks.get(offset);
    if (b != null) {
      return b;
    }
    boolean inFile = offset <= file.length() - clusterSize; // past the end: a check's zeros
    b = new Block(RefcountStructure.readBlock(file, t, word, clusterSize, zerosPastEnd));
    blocks.put(offset, b);
    if (inFile) {
      evictClean();
    }
    return b;
  }

  private void evictClean() {
    Iterator<Block> it = blocks.values().iterator();
    int excess = blocks.size() - cleanCapacity;
    while (excess > 0 && it.hasNext()) {
      if (!it.next().dirty) {
        it.remove();
        excess--;
      }
    }
  }

  /**
   * A refcount block for table index {@code t} (QEMU {@code alloc_refcount_block}), in the first
   * free cluster after the run being allocated (so that the run is not split, as in QEMU's layout)
   * when it lies in the block's own range (counting itself) or a block that exists counts it; else
   * in the first cluster its own range covers, counting itself. Block and counts stay dirty in
   * memory; the table entry is written by {@link #writeNewTableEntries} after the flush has made
   * them durable (QEMU syncs twice here, with every dirty data byte of the file behind it).
   */
  private Block newBlock(long t) throws IOException {
    while (true) {
      long free = Math.max(freeHint, newBlockFrom);
      while (refcount(free) != 0) {
        free++;
      }
      long u = free / entriesPerBlock;
      if (u != t && block(u, false) == null) {
        // The block that would count it is missing too: made first, right after it (QEMU's
        // alloc_refcount_block recurses so). Placing this one at the start of its own range
        // instead would split every free run at each block boundary: no run longer than a
        // block's clusters could ever be found in fresh space.
        long saved = newBlockFrom;
        newBlockFrom = free + 1;
        try {
          block(u, true);
        } finally {
          newBlockFrom = saved;
        }
        continue; // look again: the table may have grown over it
      }
      Block counter = u == t ? null : block(u, false);
      long offset = free << clusterBits;
      ByteBuffer data = ByteBuffer.allocate((int) clusterSize);
      if (sink != null) {
        sink.added(offset, clusterSize);
      }
      if (counter != null) {
        RefcountBlock.put(counter.data, bits, free % entriesPerBlock, 1);
        counter.dirty = true;
      } else {
        RefcountBlock.put(data, bits, free - t * entriesPerBlock, 1);
      }
      table[(int) t] = offset;
      newEntries.add((int) t);
      Block b = new Block(data);
      b.dirty = true;
      blocks.put(offset, b);
      return b;
    }
  }

  /**
   * Writes the refcount table entries of the blocks made since the last call (not synced). The
   * caller has made those blocks, and the counts of their clusters, durable first: a table entry
   * never names a block that is not on disk.
   *
   * @return whether anything was written (the caller then syncs before any L2 entry can point into
   *     the new blocks' range)
   */
  public boolean writeNewTableEntries() throws IOException {
    if (newEntries.isEmpty()) {
      return false;
    }
    for (int t : newEntries) {
      file.write(ByteBuffer.allocate(8).putLong(0, table[t]), tableOffset + 8L * t);
    }
    newEntries.clear();
    return true;
  }

  /**
   * Grows the refcount table to cover table index {@code t} (QEMU {@code qcow2_refcount_area}): the
   * new table and the refcount blocks that count it go right after the clusters the old table
   * covers, counting themselves; they are written and synced, then the header names the new table
   * (synced), then the old table's clusters are freed.
   */
  private void growTable(long t) throws IOException {
    writeDirty(); // the blocks of pending table entries, synced below with the new table
    newEntries.clear(); // the new table carries them
    int oldEntries = table.length;
    RefcountStructure.Grown g =
        RefcountStructure.grow(file, table, t, entriesPerBlock, clusterBits, bits, sink);
    long oldOffset = tableOffset;
    long oldBytes = ((oldEntries * 8L + clusterSize - 1) / clusterSize) * clusterSize;
    table = g.table();
    tableOffset = g.tableOffset();
    for (int k = 0; k < g.blocks().size(); k++) {
      blocks.put(table[oldEntries + k], new Block(g.blocks().get(k)));
    }
    if (sink != null) {
      sink.removed(oldOffset, oldBytes);
    }
    freeLater(oldOffset, oldBytes);
  }
}
