package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.format.L2Table;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Storage;

/**
 * Internal snapshots created, applied and deleted as QEMU's {@code qcow2-snapshot.c} does, on an
 * image whose writer has flushed and ended ({@code qcow2_snapshot_create}, {@code
 * qcow2_snapshot_goto}, {@code qcow2_snapshot_delete}, {@code qcow2_update_snapshot_refcount},
 * {@code qcow2_write_snapshots}). Each step is durable before the next depends on it:
 *
 * <ul>
 *   <li>refcounts rise before anything names the clusters twice, and fall only after the name is
 *       gone: refcount >= references at every instant;
 *   <li>a new snapshot table is written to new clusters and synced before the header names it (the
 *       count and offset in one write), and the old one freed after; existing entries are copied
 *       byte for byte (extra data QEMU may add included).
 * </ul>
 *
 * <p>One window cannot be closed, in QEMU either: a COPIED flag lives in an L2 table and the
 * refcount it mirrors in a refcount block, so between their two syncs {@code qemu-img check}
 * reports the flag (a refcount of 2 with COPIED while a snapshot is created, 1 without it while one
 * is deleted). Both are the harmless direction: the snapshot that would share the cluster does not
 * exist yet, or no longer; {@code check -r all} rewrites the flag.
 */
final class SnapshotEditor {
  /** QEMU {@code QCOW_MAX_SNAPSHOTS}. */
  static final int MAX_SNAPSHOTS = 65536;

  /** Extra data QEMU 7.2 writes per entry: vm_state_size_large, disk_size, icount. */
  private static final int EXTRA_BYTES = 24;

  private final Storage file;
  private final Geometry g;
  private final long cs;
  private final ClusterMapper mapper;
  private final Refcounts refcounts;
  private final OverlapGuard guard;
  private final MetadataCache cache;

  SnapshotEditor(
      Storage file,
      Header header,
      ClusterMapper mapper,
      Refcounts refcounts,
      OverlapGuard guard,
      MetadataCache cache) {
    this.file = file;
    this.g = header.geometry();
    this.cs = g.clusterSize();
    this.mapper = mapper;
    this.refcounts = refcounts;
    this.guard = guard;
    this.cache = cache;
  }

  /**
   * Creates snapshot {@code name} of the active disk ({@code virtualBytes} bytes), with the next
   * free numeric ID, dated {@code dateSeconds}/{@code dateNanos}.
   *
   * @throws IllegalArgumentException (QEMU's EINVAL) if a refcount would overflow its width, or
   *     there are {@link #MAX_SNAPSHOTS} already; nothing is written then
   * @throws IOException if a read, write or sync fails
   */
  void create(
      String name, List<Snapshot> existing, long virtualBytes, long dateSeconds, long dateNanos)
      throws IOException {
    Header now = MetadataIo.readHeader(file);
    if (existing.size() >= MAX_SNAPSHOTS) {
      throw new IllegalArgumentException("File too large"); // QEMU's EFBIG
    }
    long[] active = cache.l1Copy();
    Map<Long, Integer> adds = references(active);
    checkFits(adds);
    // 1. the snapshot's L1 table: a copy of the active one, in new clusters
    long[] copy = new long[active.length];
    for (int i = 0; i < active.length; i++) {
      copy[i] = active[i] & ~L1Entry.COPIED; // only accurate in the active table (spec)
    }
    long l1Offset = active.length == 0 ? 0 : writeNewTable(copy, "a snapshot's L1 table");
    // 2. every cluster the active table references gains the snapshot's reference
    increment(adds);
    cache.flush();
    // 3. no cluster is the active table's alone any more: COPIED cleared everywhere
    updateCopied(active);
    cache.flush();
    // 4. the table with the new entry, then the header naming it
    long id = 0;
    for (Snapshot s : existing) {
      id = Math.max(id, parseId(s.id()));
    }
    ByteBuffer old = readTable(now);
    ByteBuffer entry =
        entry(
            String.valueOf(id + 1),
            name,
            l1Offset,
            active.length,
            virtualBytes,
            dateSeconds,
            dateNanos);
    int start = (old.remaining() + 7) & ~7; // entries start 8-aligned; the last is not padded
    ByteBuffer table = ByteBuffer.allocate(start + entry.remaining());
    table.put(old.duplicate()).position(start);
    table.put(entry).flip();
    replaceTable(now, old.remaining(), table, existing.size() + 1);
  }

  /**
   * Deletes {@code victim}, entry {@code index} of the table.
   *
   * @throws IOException if a read, write or sync fails
   */
  void delete(Snapshot victim, int index, int count) throws IOException {
    Header now = MetadataIo.readHeader(file);
    ByteBuffer old = readTable(now);
    int from = entryStart(old, index);
    int to = Math.min(old.remaining(), entryStart(old, index + 1));
    ByteBuffer table = ByteBuffer.allocate(old.remaining() - (to - from));
    table.put(old.duplicate().limit(from)).put(old.duplicate().position(to)).flip();
    // 1. the entry is gone before any refcount falls
    replaceTable(now, old.remaining(), table, count - 1);
    // 2. its references dropped, its L1 table freed
    long[] l1 = readL1(victim);
    for (Map.Entry<Long, Integer> e : references(l1).entrySet()) {
      for (int k = 0; k < e.getValue(); k++) {
        refcounts.freeLater(e.getKey() * cs, cs);
      }
    }
    if (victim.l1Size() > 0) {
      refcounts.freeLater(victim.l1TableOffset(), victim.l1Size() * 8L);
    }
    cache.flush();
    // 3. clusters the active table now holds alone get COPIED back
    updateCopied(cache.l1Copy());
    cache.flush();
  }

  /**
   * Makes {@code target}'s L1 table the active one (the disk's size already set to its size by the
   * caller): its clusters gain a reference first, a copy of its L1 table is written to new clusters
   * and synced and the header pointed at it, then the old active table and its clusters lose
   * theirs.
   *
   * @throws IllegalArgumentException (QEMU's EINVAL) if a refcount would overflow its width, or the
   *     snapshot's L1 table is longer than the active one; nothing is written then
   * @throws IOException if a read, write or sync fails
   */
  void apply(Snapshot target) throws IOException {
    long[] old = cache.l1Copy();
    if (target.l1Size() > old.length) {
      throw new IllegalArgumentException(
          "the snapshot's L1 table ("
              + target.l1Size()
              + " entries) is longer than the active one ("
              + old.length
              + ")");
    }
    if (old.length == 0) {
      return; // an empty disk, and the snapshot's no larger
    }
    long[] l1 = readL1(target);
    Map<Long, Integer> adds = references(l1);
    checkFits(adds);
    increment(adds);
    cache.flush();
    long[] next = new long[old.length];
    for (int i = 0; i < l1.length; i++) {
      next[i] = l1[i] & ~L1Entry.COPIED; // every table is the snapshot's too now
    }
    // a new active L1 table, named by one header write: a torn write of the table in place (as
    // QEMU writes it) would mix the old disk's L2 tables with the snapshot's
    long oldOffset = cache.l1TableOffset();
    long at = writeNewTable(next, "the active L1 table");
    HeaderWriter.writeL1Table(file, next.length, at);
    cache.lock().lock();
    try {
      guard.removeMetadata(oldOffset);
      guard.addMetadata(at, next.length * 8L, "the active L1 table");
      cache.movedL1Table(at, next);
      refcounts.freeLater(oldOffset, old.length * 8L);
    } finally {
      cache.lock().unlock();
    }
    for (Map.Entry<Long, Integer> e : references(old).entrySet()) {
      for (int k = 0; k < e.getValue(); k++) {
        refcounts.freeLater(e.getKey() * cs, cs);
      }
    }
    cache.flush();
    updateCopied(next);
    cache.flush();
  }

  /**
   * How many references each host cluster (by index) gets from L1 table {@code l1}: its L2 tables
   * and the clusters they map (compressed streams: each cluster they touch), as {@code
   * qcow2_update_snapshot_refcount} counts them.
   */
  private Map<Long, Integer> references(long[] l1) throws IOException {
    Map<Long, Integer> refs = new HashMap<>();
    for (int i = 0; i < l1.length; i++) {
      L1Entry e = new L1Entry(l1[i]);
      if (e.l2Offset() == 0) {
        continue;
      }
      if (e.hasReservedBits()) {
        throw new ImageFormatException(
            file.location(), "L1[" + i + "] " + hex(e.word()) + ": reserved bits set");
      }
      refs.merge(e.l2Offset() / cs, 1, Integer::sum);
      L2Table t = mapper.l2Table(e.l2Offset(), i);
      for (int j = 0; j < t.entries(); j++) {
        L2Entry x = t.entry(j);
        if (x.isCompressed()) {
          L2Entry.CompressedDescriptor d = x.compressedDescriptor(g.clusterBits());
          long last = (d.hostOffset() + d.maxLength() - 1) / cs;
          for (long c = d.hostOffset() / cs; c <= last; c++) {
            refs.merge(c, 1, Integer::sum);
          }
        } else if (x.hostClusterOffset() != 0) {
          refs.merge(x.hostClusterOffset() / cs, 1, Integer::sum);
        }
      }
    }
    return refs;
  }

  /** Refuses, before anything is written, an increment past the refcount width's maximum. */
  private void checkFits(Map<Long, Integer> adds) throws IOException {
    long max = refcounts.maxRefcount();
    for (Map.Entry<Long, Integer> e : adds.entrySet()) {
      if (refcounts.refcount(e.getKey()) + e.getValue() > max) {
        throw new IllegalArgumentException("-22 (Invalid argument)"); // as qemu-img says it
      }
    }
  }

  private void increment(Map<Long, Integer> adds) throws IOException {
    cache.lock().lock();
    try {
      for (Map.Entry<Long, Integer> e : adds.entrySet()) {
        refcounts.add(e.getKey(), e.getValue());
      }
    } finally {
      cache.lock().unlock();
    }
  }

  /**
   * Sets COPIED in {@code l1} (the active table) and its L2 tables exactly where the refcount is 1
   * ({@code qcow2_update_snapshot_refcount} with addend 0); changed tables are left dirty.
   */
  private void updateCopied(long[] l1) throws IOException {
    cache.lock().lock();
    try {
      long[] next = l1.clone();
      boolean l1Changed = false;
      for (int i = 0; i < l1.length; i++) {
        L1Entry e = new L1Entry(l1[i]);
        if (e.l2Offset() == 0) {
          continue;
        }
        L2Table t = mapper.l2Table(e.l2Offset(), i);
        L2Entry[] entries = new L2Entry[t.entries()];
        boolean changed = false;
        for (int j = 0; j < t.entries(); j++) {
          L2Entry x = t.entry(j);
          entries[j] = x;
          if (x.isCompressed() || x.hostClusterOffset() == 0) {
            continue;
          }
          long word = withCopied(x.word(), refcounts.refcount(x.hostClusterOffset() / cs) == 1);
          if (word != x.word()) {
            entries[j] = new L2Entry(word, x.bitmap());
            changed = true;
          }
        }
        if (changed) {
          cache.changeTable(e.l2Offset(), t.with(0, entries));
        }
        long word = withCopied(l1[i], refcounts.refcount(e.l2Offset() / cs) == 1);
        if (word != l1[i]) {
          next[i] = word;
          l1Changed = true;
        }
      }
      if (l1Changed) {
        cache.setL1Table(next);
      }
    } finally {
      cache.lock().unlock();
    }
  }

  private static long withCopied(long word, boolean copied) {
    return copied ? word | L2Entry.QCOW_OFLAG_COPIED : word & ~L2Entry.QCOW_OFLAG_COPIED;
  }

  /** Writes {@code entries} to new clusters, their refcounts synced first; returns the offset. */
  private long writeNewTable(long[] entries, String what) throws IOException {
    int clusters = (int) ((entries.length * 8L + cs - 1) / cs);
    long at = cache.allocate(clusters);
    cache.flush();
    ByteBuffer b = ByteBuffer.allocate(entries.length * 8);
    b.asLongBuffer().put(entries);
    guard.checkNotOnOtherMetadata(at, b.capacity(), what);
    file.write(b, at);
    file.flush();
    return at;
  }

  /**
   * Writes {@code table} ({@code count} entries) to new clusters, syncs, points the header at it
   * (one write of the count and the offset, synced), and frees the old table.
   */
  private void replaceTable(Header now, int oldBytes, ByteBuffer table, int count)
      throws IOException {
    long at = 0;
    if (count > 0) {
      int clusters = (int) ((table.remaining() + cs - 1) / cs);
      at = cache.allocate(clusters);
      cache.flush();
      guard.checkNotOnOtherMetadata(at, table.remaining(), "the snapshot table");
      file.write(table.duplicate(), at);
      file.flush();
    }
    HeaderWriter.writeSnapshotTable(file, count, at);
    if (now.nbSnapshots() > 0 && oldBytes > 0) {
      refcounts.freeLater(now.snapshotsOffset(), oldBytes);
      cache.flush();
    }
  }

  /** The snapshot table's bytes as they are on disk (its entries, padding included). */
  private ByteBuffer readTable(Header now) throws IOException {
    int n = now.nbSnapshots();
    if (n == 0) {
      return ByteBuffer.allocate(0);
    }
    // the entries are walked to find the table's end; each read is bounded by the table's limit
    long at = now.snapshotsOffset();
    long end = at;
    ByteBuffer fixed = ByteBuffer.allocate(40);
    for (int i = 0; i < n; i++) {
      end = (end + 7) & ~7L; // QEMU aligns each entry's start, not the table's end
      file.readFully(fixed.clear(), end);
      end += entryBytes(fixed.flip(), 0, false);
      if (end - at > Snapshot.MAX_TABLE_BYTES) {
        throw new ImageFormatException(file.location(), "snapshot table too large");
      }
    }
    ByteBuffer b = ByteBuffer.allocate((int) (end - at));
    file.readFully(b, at);
    return b.flip();
  }

  /**
   * The byte offset in {@code table} where entry {@code index} starts (8-aligned; past the last
   * entry, the 8-aligned end of the table).
   */
  private static int entryStart(ByteBuffer table, int index) {
    int p = 0;
    for (int i = 0; i < index; i++) {
      p += entryBytes(table, p, true);
    }
    return p;
  }

  /** The bytes of the entry at {@code p} (spec section 5), with {@code padded} up to 8. */
  private static int entryBytes(ByteBuffer b, int p, boolean padded) {
    int idBytes = b.getShort(p + 12) & 0xffff;
    int nameBytes = b.getShort(p + 14) & 0xffff;
    long extra = b.getInt(p + 36) & 0xffffffffL;
    long bytes = 40 + extra + idBytes + nameBytes;
    return (int) (padded ? (bytes + 7) & ~7L : bytes);
  }

  /** A new table entry as QEMU 7.2 writes it: 24 bytes of extra data, no VM state. */
  private static ByteBuffer entry(
      String id,
      String name,
      long l1Offset,
      int l1Size,
      long diskBytes,
      long dateSeconds,
      long dateNanos) {
    byte[] idb = id.getBytes(StandardCharsets.UTF_8);
    byte[] nameb = name.getBytes(StandardCharsets.UTF_8);
    if (nameb.length > 0xffff) {
      throw new IllegalArgumentException("snapshot name longer than 65535 bytes");
    }
    int bytes = (40 + EXTRA_BYTES + idb.length + nameb.length + 7) & ~7;
    ByteBuffer b = ByteBuffer.allocate(bytes);
    b.putLong(0, l1Offset);
    b.putInt(8, l1Size);
    b.putShort(12, (short) idb.length);
    b.putShort(14, (short) nameb.length);
    b.putInt(16, (int) dateSeconds);
    b.putInt(20, (int) dateNanos);
    b.putInt(36, EXTRA_BYTES);
    b.putLong(48, diskBytes);
    b.put(40 + EXTRA_BYTES, idb);
    b.put(40 + EXTRA_BYTES + idb.length, nameb);
    return b;
  }

  /** The snapshot's L1 table entries. */
  private long[] readL1(Snapshot s) throws IOException {
    long[] l1 = new long[s.l1Size()];
    if (l1.length > 0) {
      ByteBuffer b = ByteBuffer.allocate(l1.length * 8);
      file.readFully(b, s.l1TableOffset());
      b.flip().asLongBuffer().get(l1);
    }
    return l1;
  }

  /** A snapshot ID as QEMU's {@code find_new_snapshot_id} reads it ({@code strtoul}). */
  private static long parseId(String id) {
    int n = 0;
    while (n < id.length() && Character.isDigit(id.charAt(n))) {
      n++;
    }
    try {
      return n == 0 ? 0 : Long.parseLong(id.substring(0, n));
    } catch (NumberFormatException e) {
      return 0;
    }
  }
}
