package org.jqcowfs.qcow2.write;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Storage;

/**
 * A new virtual disk size (QEMU {@code qcow2_co_truncate}, preallocation off), each step durable
 * before the next names it, the size field written last:
 *
 * <ul>
 *   <li>growing: an L1 table too short for the new size is replaced by one of exactly the entries
 *       needed ({@code qcow2_grow_l1_table} with {@code exact_size}): clusters allocated and their
 *       refcounts synced, the table written and synced, the header pointed at it, the old table
 *       freed. Where the backing file is longer than the old disk, the new range is made to read as
 *       zeros (the block layer's {@code BDRV_REQ_ZERO_WRITE}): zero data up to the next subcluster,
 *       zero (sub)clusters after it;
 *   <li>shrinking: the clusters past the new end are unallocated ({@code qcow2_cluster_discard}
 *       with {@code full_discard}), the L1 entries past it zeroed and synced and their L2 tables
 *       freed ({@code qcow2_shrink_l1_table}), and the file cut after its last cluster in use.
 * </ul>
 */
final class Truncate {
  private final Storage file;
  private final Geometry g;
  private final long cs;
  private final Refcounts refcounts;
  private final OverlapGuard guard;
  private final MetadataCache cache;
  private final ZeroesAndDiscards zeroes;
  private final Qcow2Writer writer;
  private final FormatChanges changes;

  Truncate(
      Storage file,
      Header header,
      Refcounts refcounts,
      OverlapGuard guard,
      MetadataCache cache,
      ZeroesAndDiscards zeroes,
      Qcow2Writer writer,
      FormatChanges changes) {
    this.file = file;
    this.g = header.geometry();
    this.cs = g.clusterSize();
    this.refcounts = refcounts;
    this.guard = guard;
    this.cache = cache;
    this.zeroes = zeroes;
    this.writer = writer;
    this.changes = changes;
  }

  /**
   * Resizes to {@code newBytes} (a multiple of 512, checked by the caller with QEMU's other
   * refusals); {@code zeroNewRange}: the backing file reaches past the old end, so the new range
   * must not show it.
   *
   * @throws IOException if a write or sync fails; what was synced before stays consistent
   */
  void to(long newBytes, boolean zeroNewRange) throws IOException {
    cache.flush();
    Header now = MetadataIo.readHeader(file);
    long oldBytes = now.size();
    if (newBytes > oldBytes) {
      long needed = g.l1EntriesFor(newBytes);
      if (needed > now.l1Size()) {
        growL1(now, (int) needed);
      }
      if (zeroNewRange) {
        long sc = 1L << g.subclusterBits();
        long zeroStart = (oldBytes + sc - 1) & -sc;
        long head = Math.min(zeroStart, newBytes) - oldBytes;
        if (head > 0) { // the rest of the last subcluster: zero data
          writer.write(ByteBuffer.allocate((int) head), oldBytes);
        }
        long zeroEnd = (newBytes + sc - 1) & -sc;
        if (zeroEnd > zeroStart) {
          zeroes.writeZeroes(zeroStart, zeroEnd - zeroStart, false);
        }
      }
      cache.flush();
    } else if (newBytes < oldBytes) {
      zeroes.discardFull((newBytes + cs - 1) & -cs, oldBytes);
      cache.flush();
      shrinkL1(now, g.l1EntriesFor(newBytes));
    }
    HeaderWriter.writeSize(file, newBytes);
    if (newBytes < oldBytes) {
      changes.releaseFreeSpace();
    }
  }

  private void growL1(Header now, int entries) throws IOException {
    long oldOffset = cache.l1TableOffset();
    int oldBytes = now.l1Size() * 8;
    long[] table = new long[entries];
    if (oldBytes > 0) {
      ByteBuffer old = ByteBuffer.allocate(oldBytes);
      file.readFully(old, oldOffset);
      old.flip().asLongBuffer().get(table, 0, now.l1Size());
    }
    int clusters = (int) ((entries * 8L + cs - 1) / cs);
    long at = cache.allocate(clusters);
    cache.flush(); // the new clusters' refcounts durable before the table is written there
    ByteBuffer b = ByteBuffer.allocate(clusters * (int) cs);
    b.asLongBuffer().put(table);
    guard.checkNotOnOtherMetadata(at, b.capacity(), "the grown L1 table");
    file.write(b, at);
    file.flush();
    HeaderWriter.writeL1Table(file, entries, at);
    cache.lock().lock();
    try {
      guard.removeMetadata(oldOffset);
      guard.addMetadata(at, entries * 8L, "the active L1 table");
      cache.movedL1Table(at, table);
      if (oldBytes > 0) {
        refcounts.freeLater(oldOffset, oldBytes);
      }
    } finally {
      cache.lock().unlock();
    }
    cache.flush();
  }

  private void shrinkL1(Header now, long keep) throws IOException {
    int size = now.l1Size();
    if (keep >= size) {
      return;
    }
    long offset = cache.l1TableOffset();
    ByteBuffer tail = ByteBuffer.allocate((int) ((size - keep) * 8));
    file.readFully(tail, offset + keep * 8);
    file.write(ByteBuffer.allocate(tail.capacity()), offset + keep * 8);
    file.flush();
    cache.lock().lock();
    try {
      long[] entries = cache.l1Copy();
      tail.flip();
      for (long i = keep; i < size; i++) {
        long l2 = new L1Entry(tail.getLong()).l2Offset();
        if (l2 != 0) {
          guard.removeL2Table(l2);
          refcounts.freeLater(l2, cs);
        }
        entries[(int) i] = 0;
      }
      cache.movedL1Table(offset, entries);
    } finally {
      cache.lock().unlock();
    }
    cache.flush();
  }
}
