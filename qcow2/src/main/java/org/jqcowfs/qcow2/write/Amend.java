package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.L2Table;
import org.jqcowfs.qcow2.format.RefcountBlock;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Storage;

/**
 * The format changes of {@code qemu-img amend} (QEMU {@code qcow2_amend_options}), on an image
 * whose writer has flushed and ended; each reads the header from disk, so they run one after the
 * other in QEMU's order, and each is durable before the header names its result:
 *
 * <ul>
 *   <li>{@link #upgrade}: v2 to v3, one header rewrite ({@code qcow2_upgrade});
 *   <li>{@link #lazyRefcounts}: the compatible bit;
 *   <li>{@link #changeRefcountOrder}: new refcount blocks and table of the new width written after
 *       the file's end and synced, then one header write names them and the width ({@code
 *       qcow2_change_refcount_order} reaches the same result walking in place);
 *   <li>{@link #expandZeroClusters} and {@link #downgrade}: zero clusters of every L1 table made
 *       plain (zeros written and synced before the flag is cleared), then the v2 header ({@code
 *       qcow2_downgrade}, {@code qcow2_expand_zero_clusters}).
 * </ul>
 */
final class Amend {
  private final Storage file;
  private final Geometry g;
  private final long cs;
  private final ClusterMapper mapper;
  private final Refcounts refcounts;
  private final MetadataCache cache;
  private final DataWriter data;

  Amend(
      Storage file,
      Header header,
      ClusterMapper mapper,
      Refcounts refcounts,
      MetadataCache cache,
      DataWriter data) {
    this.file = file;
    this.data = data;
    this.g = header.geometry();
    this.cs = g.clusterSize();
    this.mapper = mapper;
    this.refcounts = refcounts;
    this.cache = cache;
  }

  /** A v2 image becomes v3: the header rewritten with v3's fields, no feature bit set. */
  void upgrade() throws IOException {
    Header now = MetadataIo.readHeader(file);
    if (now.version() >= 3) {
      return;
    }
    HeaderWriter.checkRewritable(file, now, "amend it with qemu-img amend");
    HeaderWriter.write(file, now.withFormat(3, 0, 0, 0, now.refcountOrder(), 0));
  }

  /** Sets or clears the lazy refcounts bit (a v3 image, clean: the opener repaired a dirty one). */
  void lazyRefcounts(boolean on) throws IOException {
    Header now = MetadataIo.readHeader(file);
    long bits =
        on
            ? now.compatibleFeatures() | Header.COMPAT_LAZY_REFCOUNTS
            : now.compatibleFeatures() & ~Header.COMPAT_LAZY_REFCOUNTS;
    if (bits != now.compatibleFeatures()) {
      HeaderWriter.writeCompatibleFeatures(file, bits);
    }
  }

  /**
   * The largest refcount of the image, and where: checked against a narrower width before anything
   * is written ({@code qcow2_change_refcount_order}'s message names the first cluster too wide).
   *
   * @return null if every refcount fits {@code newOrder}, else qemu-img's message
   */
  String refcountTooWide(int newOrder) throws IOException {
    long max = newOrder == 6 ? Long.MAX_VALUE : (1L << (1 << newOrder)) - 1;
    long clusters = (file.length() + cs - 1) / cs;
    for (long c = 0; c < clusters; c++) {
      long r = refcounts.refcount(c);
      if (r > max) {
        return "Cannot decrease refcount entry width to "
            + (1 << newOrder)
            + " bits: Cluster at offset "
            + hex(c * cs)
            + " has a refcount of "
            + r;
      }
    }
    return null;
  }

  /**
   * Rewrites the refcount structures with entries of {@code 1 << newOrder} bits: a new table and
   * blocks placed after the file's last cluster (free under the old structures, so a crash before
   * the switch leaves nothing referenced), holding every cluster's refcount (the old structures'
   * clusters 0, the new ones' 1), synced; then the header's refcount table offset, its clusters and
   * the order in one write, synced. The caller checked {@link #refcountTooWide}.
   */
  void changeRefcountOrder(int newOrder) throws IOException {
    cache.flush();
    Header now = MetadataIo.readHeader(file);
    if (now.refcountOrder() == newOrder) {
      return;
    }
    long fileClusters = (file.length() + cs - 1) / cs;
    Set<Long> oldStructures = new HashSet<>();
    for (long t = 0; t < now.refcountTableClusters(); t++) {
      oldStructures.add(now.refcountTableOffset() / cs + t);
    }
    for (long word : refcounts.table()) {
      long block = word & Refcounts.REFT_OFFSET_MASK;
      if (block != 0) {
        oldStructures.add(block / cs);
      }
    }
    int bits = 1 << newOrder;
    long perBlock = cs * 8 / bits;
    long blocks = 0;
    long tableClusters = 0;
    while (true) { // the new structures count themselves
      long total = fileClusters + tableClusters + blocks;
      long b = (total + perBlock - 1) / perBlock;
      long t = (b * 8 + cs - 1) / cs;
      if (b == blocks && t == tableClusters) {
        break;
      }
      blocks = b;
      tableClusters = t;
    }
    long tableAt = fileClusters;
    long blocksAt = tableAt + tableClusters;
    long end = blocksAt + blocks;
    ByteBuffer table = ByteBuffer.allocate((int) (tableClusters * cs));
    ByteBuffer block = ByteBuffer.allocate((int) cs);
    for (long i = 0; i < blocks; i++) {
      block.clear();
      java.util.Arrays.fill(block.array(), (byte) 0);
      for (long c = i * perBlock; c < Math.min(end, (i + 1) * perBlock); c++) {
        long r;
        if (c >= fileClusters) {
          r = 1; // the new table and blocks
        } else if (oldStructures.contains(c)) {
          r = 0; // free once the header names the new structures
        } else {
          r = refcounts.refcount(c);
        }
        if (r != 0) {
          RefcountBlock.put(block, bits, c - i * perBlock, r);
        }
      }
      file.write(block, (blocksAt + i) * cs);
      table.putLong((int) (i * 8), (blocksAt + i) * cs);
    }
    file.write(table.clear(), tableAt * cs);
    file.flush();
    HeaderWriter.writeRefcountStructures(file, tableAt * cs, (int) tableClusters, newOrder);
  }

  /**
   * Whether a compressed cluster is referenced by {@code l1Tables} (zstd ones keep a v3 image from
   * a downgrade: v2 knows deflate only).
   */
  boolean hasCompressedClusters(List<long[]> l1Tables) throws IOException {
    for (Map.Entry<Long, Long> t : l2Tables(l1Tables).entrySet()) {
      L2Table table = mapper.l2Table(t.getKey(), t.getValue());
      for (int j = 0; j < table.entries(); j++) {
        if (table.entry(j).isCompressed()) {
          return true;
        }
      }
    }
    return false;
  }

  /**
   * Makes every zero cluster of {@code l1Tables} (the active one and the snapshots') a plain one
   * ({@code qcow2_expand_zero_clusters}): one with a host cluster gets zeros written there and its
   * flag cleared; one without becomes unallocated where nothing shows through ({@code backing}
   * false), else gets a new cluster of zeros (its refcount the L2 table's, as the table may be
   * shared). Zeros and refcounts are synced before any L2 table names them.
   */
  void expandZeroClusters(List<long[]> l1Tables, boolean backing) throws IOException {
    ByteBuffer zeros = ByteBuffer.allocate((int) cs);
    Map<Long, L2Table> changed = new LinkedHashMap<>();
    for (Map.Entry<Long, Long> t : l2Tables(l1Tables).entrySet()) {
      long l2Offset = t.getKey();
      L2Table table = mapper.l2Table(l2Offset, t.getValue());
      L2Entry[] entries = new L2Entry[table.entries()];
      boolean any = false;
      long l2Refcount = refcounts.refcount(l2Offset / cs);
      for (int j = 0; j < table.entries(); j++) {
        L2Entry e = table.entry(j);
        entries[j] = e;
        if (e.isCompressed() || (e.word() & L2Entry.QCOW_OFLAG_ZERO) == 0) {
          continue;
        }
        any = true;
        long host = e.hostClusterOffset();
        if (host != 0) {
          data.write(zeros.clear(), host); // encrypted zeros where encrypted
          entries[j] = new L2Entry(e.word() & ~L2Entry.QCOW_OFLAG_ZERO, 0);
        } else if (!backing) {
          entries[j] = new L2Entry(0, 0);
        } else {
          long fresh = cache.allocate(1);
          if (l2Refcount > 1) {
            cache.lock().lock();
            try {
              refcounts.add(fresh / cs, (int) (l2Refcount - 1));
            } finally {
              cache.lock().unlock();
            }
          }
          data.write(zeros.clear(), fresh);
          entries[j] = new L2Entry(fresh | (l2Refcount == 1 ? L2Entry.QCOW_OFLAG_COPIED : 0), 0);
        }
      }
      if (any) {
        changed.put(l2Offset, table.with(0, entries));
      }
    }
    cache.flush(); // the zeros and the new clusters' refcounts, before the tables name them
    cache.lock().lock();
    try {
      for (Map.Entry<Long, L2Table> e : changed.entrySet()) {
        cache.changeTable(e.getKey(), e.getValue());
      }
    } finally {
      cache.lock().unlock();
    }
    cache.flush();
  }

  /**
   * Writes the header as v2 (the feature bits, the bitmaps' consistency and zstd go; the caller
   * checked what QEMU refuses and expanded the zero clusters).
   */
  void downgrade() throws IOException {
    Header now = MetadataIo.readHeader(file);
    if (now.version() < 3) {
      return;
    }
    HeaderWriter.checkRewritable(file, now, "amend it with qemu-img amend");
    HeaderWriter.write(file, now.withFormat(2, 0, 0, 0, now.refcountOrder(), 0));
  }

  /** The L2 tables of {@code l1Tables}, each once: its offset and an L1 index naming it. */
  private Map<Long, Long> l2Tables(List<long[]> l1Tables) {
    Map<Long, Long> tables = new LinkedHashMap<>();
    for (long[] l1 : l1Tables) {
      for (int i = 0; i < l1.length; i++) {
        long l2 = new L1Entry(l1[i]).l2Offset();
        if (l2 != 0) {
          tables.putIfAbsent(l2, (long) i);
        }
      }
    }
    return tables;
  }

  /** The L1 tables an amend walks: the active one, then each snapshot's. */
  List<long[]> l1Tables(List<Snapshot> snapshots) throws IOException {
    List<long[]> out = new ArrayList<>();
    out.add(cache.l1Copy());
    for (Snapshot s : snapshots) {
      long[] l1 = new long[s.l1Size()];
      if (l1.length > 0) {
        ByteBuffer b = ByteBuffer.allocate(l1.length * 8);
        file.readFully(b, s.l1TableOffset());
        b.flip().asLongBuffer().get(l1);
      }
      out.add(l1);
    }
    return out;
  }
}
