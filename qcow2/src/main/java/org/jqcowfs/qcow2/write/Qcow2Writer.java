package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.qcow2.compress.Compressor;
import org.jqcowfs.qcow2.crypto.Luks;
import org.jqcowfs.qcow2.crypto.SectorCipher;
import org.jqcowfs.qcow2.format.BitmapOp;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.L2Cache;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.qcow2.write.ClusterAllocator.Allocation;
import org.jqcowfs.qcow2.write.ClusterAllocator.Step;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The write side of one qcow2 image (QEMU {@code qcow2_co_pwritev_part}, {@code
 * qcow2_alloc_host_offset}, {@code qcow2_alloc_cluster_link_l2}): writes land in place in clusters
 * whose L2 entry is COPIED; any other cluster (unallocated, zero, compressed, shared with a
 * snapshot) gets a new host cluster, written whole: the head and tail the request does not cover
 * are copied from what the guest reads there now (the old cluster, the backing image, or zeros),
 * read through the narrow {@link GuestReader}, never through the image itself.
 *
 * <p>Split as QEMU's files split it: {@link ClusterAllocator} maps a write to host clusters and
 * links them ({@code qcow2-cluster.c}), {@link ZeroesAndDiscards} changes whole clusters ({@code
 * qcow2_cluster_zeroize}, {@code qcow2_cluster_discard}), {@link MetadataCache} holds the changed
 * metadata, owns the one lock (QEMU's {@code s->lock}) and writes it in the order that keeps
 * refcount >= references at every instant ({@code qcow2-cache.c}), {@link OverlapGuard} refuses a
 * write onto metadata ({@code qcow2_check_metadata_overlap}). Metadata changes under the lock; data
 * is read and written outside it. This class writes the data and the copy-on-write around it.
 */
public final class Qcow2Writer {
  private static final Logger LOG = LoggerFactory.getLogger(Qcow2Writer.class);

  private final GuestReader guest;
  private final Location path;
  private final Storage file;
  private final Header header;
  private final long cs;
  private final OverlapGuard guard;
  private final MetadataCache cache;
  private final ClusterAllocator allocator;
  private final ZeroesAndDiscards zeroes;
  private final Refcounts refcounts;
  private final PersistentBitmaps bitmaps;
  private final Compressor compressor;
  private final ClusterMapper mapper;
  private final DataWriter clusterData;

  /**
   * The write side of the image in {@code file}, reading what copy-on-write needs through {@code
   * guest}; clears the autoclear bits of a v3 image that it does not keep up to date (all but the
   * bitmaps bit), and marks the enabled persistent dirty bitmaps in use ({@link
   * PersistentBitmaps}).
   *
   * @param snapshotTableBytes the snapshot table's bytes in the file (for the overlap checks)
   * @throws org.jqcowfs.image.ImageFormatException if the bitmaps cannot be kept (a directory or
   *     table QEMU refuses, or clusters not theirs alone): the image opens read-only only
   * @throws IOException if the refcount table cannot be read or the header written
   */
  public Qcow2Writer(
      GuestReader guest,
      Storage file,
      Header header,
      ClusterMapper mapper,
      L2Cache l2Cache,
      List<Snapshot> snapshots,
      long snapshotTableBytes,
      SectorCipher cipher)
      throws IOException {
    this.guest = guest;
    this.clusterData = new DataWriter(file, cipher);
    this.path = file.location();
    this.file = file;
    this.header = header;
    this.cs = header.geometry().clusterSize();
    Refcounts refcounts = new Refcounts(file, header);
    this.guard = new OverlapGuard(file, header, mapper, refcounts, snapshots, snapshotTableBytes);
    this.cache = new MetadataCache(file, header, mapper, l2Cache, refcounts, guard);
    this.allocator =
        new ClusterAllocator(file, header, mapper, refcounts, guard, cache, clusterData);
    this.zeroes = new ZeroesAndDiscards(guest, file, header, mapper, allocator, cache, this::write);
    this.refcounts = refcounts;
    this.compressor = Compressor.forType(header.compressionType());
    this.mapper = mapper;
    long autoclear = header.version() >= 3 ? header.autoclearFeatures() : 0;
    long kept = autoclear & Header.AUTOCLEAR_BITMAPS;
    this.bitmaps = PersistentBitmaps.open(file, header, kept, refcounts, guard); // may refuse
    if (autoclear != kept) {
      // The spec: a writer clears the autoclear bits it does not keep up to date.
      HeaderWriter.writeAutoclearFeatures(file, kept);
      LOG.info("{}: autoclear bits {} cleared", path, hex(autoclear & ~kept));
    }
    bitmaps.markInUse();
  }

  /**
   * Writes {@code src}'s remaining bytes at {@code guestOffset}; the ranges copied into new
   * clusters are read as the guest reads them now ({@link GuestReader}).
   */
  public void write(ByteBuffer src, long guestOffset) throws IOException {
    bitmaps.mark(guestOffset, src.remaining());
    long pos = guestOffset;
    while (src.hasRemaining()) {
      Step step = allocator.prepare(pos, src.remaining());
      int n = (int) step.bytes();
      ByteBuffer part = src.slice(src.position(), n);
      boolean done = false;
      try {
        if (step.allocation() == null) {
          clusterData.write(part, step.hostOffset());
        } else {
          writeAllocated(step, part, pos);
        }
        done = true;
      } finally {
        allocator.finish(step, done);
      }
      src.position(src.position() + n);
      pos += n;
    }
  }

  /**
   * Writes one guest cluster compressed (QEMU {@code qcow2_co_pwritev_compressed_part}): {@code
   * src}'s remaining bytes are the cluster at the cluster-aligned {@code guestOffset}, or the part
   * of the last cluster before the disk's end (the rest is taken as zeros). Compressed with the
   * header's compression type in the caller's thread, so that callers compress on all cores; a
   * cluster whose stream would not be shorter than a cluster is written as a normal cluster.
   *
   * @throws IllegalArgumentException if the range is not one whole cluster (or the disk's tail)
   * @throws IOException (QEMU's EIO) if the cluster is allocated already, or a write fails
   */
  public void writeCompressed(ByteBuffer src, long guestOffset) throws IOException {
    if (clusterData.encrypted()) { // as QEMU: an encrypted image has no compressed clusters
      throw new IOException(path + ": compression and encryption not supported at the same time");
    }
    int n = src.remaining();
    if (guestOffset % cs != 0 || n > cs || (n < cs && guestOffset + n != guest.size())) {
      throw new IllegalArgumentException(
          "a compressed write is one whole cluster: " + n + " bytes at " + hex(guestOffset));
    }
    ByteBuffer[] b = COMPRESS_BUFFERS.get();
    if (b == null || b[0].capacity() != cs) {
      b =
          new ByteBuffer[] {
            ByteBuffer.allocateDirect((int) cs), ByteBuffer.allocateDirect((int) cs)
          };
      COMPRESS_BUFFERS.set(b);
    }
    ByteBuffer in = b[0].clear();
    in.put(src.duplicate());
    while (in.hasRemaining()) {
      in.put((byte) 0);
    }
    ByteBuffer out = b[1].clear().limit((int) cs - 1); // QEMU: at most cluster_size - 1 bytes
    int bytes = compressor.compress(in.flip(), out);
    if (bytes < 0) {
      write(src, guestOffset);
      return;
    }
    bitmaps.mark(guestOffset, n);
    ClusterAllocator.CompressedStep step = allocator.prepareCompressed(guestOffset, bytes);
    boolean done = false;
    try {
      file.write(out.limit(bytes).position(0), step.hostOffset());
      done = true;
    } finally {
      allocator.finishCompressed(step, done);
    }
    src.position(src.limit());
  }

  /** This thread's cluster and compressed-stream buffers for {@link #writeCompressed}. */
  private static final ThreadLocal<ByteBuffer[]> COMPRESS_BUFFERS = new ThreadLocal<>();

  /** As {@link ZeroesAndDiscards#writeZeroes}. */
  public void writeZeroes(long pos, long bytes, boolean mayUnmap) throws IOException {
    bitmaps.mark(pos, bytes);
    zeroes.writeZeroes(pos, bytes, mayUnmap);
  }

  /** As {@link ZeroesAndDiscards#punchHole}. */
  public void punchHole(long pos, long bytes) throws IOException {
    bitmaps.mark(pos, bytes);
    zeroes.punchHole(pos, bytes);
  }

  /** As {@link ZeroesAndDiscards#discard}. */
  public void discard(long pos, long bytes) throws IOException {
    bitmaps.mark(pos, bytes);
    zeroes.discard(pos, bytes);
  }

  /** As {@link ClusterAllocator#preallocate}, then {@link #flush}. */
  public void preallocate(boolean reserve, boolean zeroes) throws IOException {
    allocator.preallocate(reserve, zeroes, guest.size());
    flush();
  }

  /** As {@link MetadataCache#flush}. */
  public void flush() throws IOException {
    cache.flush();
  }

  /**
   * Ends the writes: {@link #flush}, then the persistent dirty bitmaps are stored and marked
   * consistent ({@link PersistentBitmaps#store}); a write after this fails.
   */
  public void close() throws IOException {
    cache.flush();
    bitmaps.store(cache);
  }

  /**
   * Ends the writes ({@link #close}), then runs {@code ops} on bitmap {@code name} and stores the
   * result ({@link BitmapEditor}, as {@code qemu-img bitmap}); the image is then only to be closed.
   *
   * @throws IllegalArgumentException if QEMU would refuse an operation (nothing is written then)
   * @throws org.jqcowfs.image.ImageFormatException for a v2 image, a header with an extension the
   *     header writer does not know, or a damaged bitmap
   * @throws IOException if the image cannot be read or written
   */
  public void editBitmaps(String name, List<BitmapOp> ops) throws IOException {
    close();
    new BitmapEditor(file, refcounts, cache, guard).apply(name, ops);
  }

  /**
   * Unallocates every cluster of the active disk ({@code qcow2_make_empty}'s path for any image: a
   * full discard of each cluster, the backing file showing through after), and flushes. What the
   * guest reads is the caller's affair (commit has copied it below first), so no bitmap is marked.
   *
   * @throws IOException if a write or sync fails
   */
  public void makeEmpty(long virtualBytes) throws IOException {
    zeroes.discardFull(0, virtualBytes);
    cache.flush();
    releaseFreeSpace();
  }

  /**
   * Gives the host file system back what no cluster uses (after a {@link MetadataCache#flush}, so
   * that no durable table names a cluster counted free): each run of free clusters punched, the
   * file cut after its last cluster in use ({@code qcow2_get_last_cluster}). An emptied top then
   * holds little more than its metadata, as QEMU's {@code make_completely_empty} leaves it. A file
   * system without hole punching keeps the free runs.
   *
   * @throws IOException if the refcounts cannot be read or the file cut
   */
  void releaseFreeSpace() throws IOException {
    long length = file.length();
    long clusters = (length + cs - 1) / cs;
    long last = -1;
    long freeFrom = -1;
    boolean punch = true;
    for (long c = 0; c < clusters; c++) {
      if (refcounts.refcount(c) != 0) {
        if (freeFrom >= 0 && punch) {
          punch = punch(freeFrom * cs, (c - freeFrom) * cs);
        }
        freeFrom = -1;
        last = c;
      } else if (freeFrom < 0) {
        freeFrom = c;
      }
    }
    if ((last + 1) * cs < length) {
      file.setLength((last + 1) * cs);
    }
  }

  /** Punches {@code [at, at + bytes)}; false when the file system cannot. */
  private boolean punch(long at, long bytes) {
    try {
      file.punchHole(at, bytes);
      return true;
    } catch (IOException e) {
      LOG.debug("{}: free clusters not punched: {}", path, e.getMessage());
      return false;
    }
  }

  /**
   * Ends the writes ({@link #close}), then gives the virtual disk {@code newBytes} bytes ({@link
   * Truncate}, QEMU {@code qcow2_co_truncate}); the image is then only to be closed. Persistent
   * dirty bitmaps are kept in use through it, every one, then stored anew at the new size ({@link
   * BitmapEditor#resize}, as QEMU's block layer truncates them and stores them at close): grown
   * clean, shrunk to what is left.
   *
   * @throws IllegalArgumentException if a bitmap was in use (inconsistent) before: QEMU refuses it
   * @param zeroNewRange the backing file reaches past the old end: the new range is made to read as
   *     zeros
   * @throws IOException if a write or sync fails
   */
  public void resize(long newBytes, boolean zeroNewRange) throws IOException {
    boolean resizeBitmaps = bitmaps.any();
    if (resizeBitmaps) {
      List<String> inconsistent = bitmaps.inUseAtOpen();
      if (!inconsistent.isEmpty()) { // qemu-img resize refuses at open
        throw new IllegalArgumentException(
            "Bitmap '"
                + inconsistent.get(0)
                + "' is inconsistent and cannot be used; remove it (jqcowfs bitmap --remove)");
      }
      bitmaps.keepInUse(); // every bitmap in use until stored at the new size
    }
    close();
    new Truncate(file, header, refcounts, guard, cache, zeroes, this).to(newBytes, zeroNewRange);
    if (resizeBitmaps) {
      new BitmapEditor(file, refcounts, cache, guard).resize();
    }
  }

  /**
   * Ends the writes ({@link #close}), then rewrites the header once, naming {@code name} (null:
   * none) as the backing file with format {@code format}, and syncs (QEMU {@code
   * qcow2_change_backing_file}); the image is then only to be closed.
   *
   * @throws IllegalArgumentException for a name over 1023 bytes, or a format without a name
   * @throws org.jqcowfs.image.ImageFormatException for a header with an extension the header writer
   *     does not know
   * @throws IOException if the name does not fit in the header's cluster, or a write fails
   */
  public void changeBackingFile(String name, String format) throws IOException {
    if (name != null && name.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > 1023) {
      throw new IllegalArgumentException("Invalid argument"); // QEMU's EINVAL
    }
    if (format != null && name == null) {
      throw new IllegalArgumentException("a backing format needs a backing file");
    }
    close();
    Header now = MetadataIo.readHeader(file); // the refcount table may have moved
    HeaderWriter.checkRewritable(file, now, "rebase it with qemu-img rebase");
    Header next = now.withBacking(name, format);
    try {
      next.encode();
    } catch (IllegalStateException e) {
      throw new IOException("No space left on device"); // QEMU's ENOSPC: not in the first cluster
    }
    HeaderWriter.write(file, next);
  }

  /**
   * Ends the writes ({@link #close}), then creates internal snapshot {@code name} of the active
   * disk ({@link SnapshotEditor#create}, QEMU {@code qcow2_snapshot_create}); the image is then
   * only to be closed.
   *
   * @param existing the snapshots the table holds now, in its order
   * @throws IllegalArgumentException if QEMU would refuse it (a refcount would overflow, too many
   *     snapshots); nothing is written then
   * @throws IOException if a read, write or sync fails
   */
  public void createSnapshot(String name, List<Snapshot> existing, long dateSeconds, long dateNanos)
      throws IOException {
    close();
    snapshotEditor().create(name, existing, guest.size(), dateSeconds, dateNanos);
  }

  /**
   * Ends the writes ({@link #close}), then deletes entry {@code index} of the {@code count}
   * snapshots ({@link SnapshotEditor#delete}, QEMU {@code qcow2_snapshot_delete}); the image is
   * then only to be closed.
   *
   * @throws IOException if a read, write or sync fails
   */
  public void deleteSnapshot(Snapshot victim, int index, int count) throws IOException {
    close();
    snapshotEditor().delete(victim, index, count);
  }

  /**
   * Ends the writes ({@link #close}), then makes {@code target}'s L1 table the active one ({@link
   * SnapshotEditor#apply}, QEMU {@code qcow2_snapshot_goto}); the disk must have the snapshot's
   * size already. The image is then only to be closed.
   *
   * @throws IllegalArgumentException if QEMU would refuse it; nothing is written then
   * @throws IOException if a read, write or sync fails
   */
  public void applySnapshot(Snapshot target) throws IOException {
    close();
    snapshotEditor().apply(target);
  }

  /**
   * Ends the writes ({@link #close}); then the format changes of {@code qemu-img amend} in QEMU's
   * order ({@link Amend}), each durable before the header names it: {@code upgrade} to v3, the lazy
   * refcounts bit ({@code lazy}, null: unchanged), {@code resize} (null: none), the refcount order
   * ({@code order}), and {@code downgrade} to v2 with the zero clusters of every L1 table expanded
   * first. The caller checked what QEMU refuses ({@link #amendRefusal}); the image is then only to
   * be closed.
   *
   * @param backing whether the header names a backing file (zero clusters then need zeros)
   * @throws IOException if a read, write or sync fails
   */
  public void amend(
      boolean upgrade,
      Boolean lazy,
      ResizeStep resize,
      int order,
      boolean downgrade,
      List<Snapshot> snapshots,
      boolean backing)
      throws IOException {
    close();
    Amend a = new Amend(file, header, mapper, refcounts, cache, clusterData);
    if (upgrade) {
      a.upgrade();
    }
    if (lazy != null) {
      a.lazyRefcounts(lazy);
    }
    if (resize != null) {
      resize.run();
    }
    if (downgrade) { // before the refcount change, which leaves this writer's refcounts stale
      a.expandZeroClusters(a.l1Tables(snapshots), backing);
    }
    a.changeRefcountOrder(order);
    if (downgrade) {
      a.downgrade();
    }
  }

  /** A resize run inside {@link #amend}, at QEMU's point in the order. */
  public interface ResizeStep {
    void run() throws IOException;
  }

  /**
   * What QEMU's {@code qcow2_change_refcount_order} and {@code qcow2_downgrade} refuse that needs
   * the image's metadata to know: a refcount too wide for {@code order}, zstd compressed clusters
   * before a downgrade. Nothing is written.
   *
   * @return qemu-img's message, or null
   * @throws IOException if the metadata cannot be read
   */
  public String amendRefusal(int order, boolean downgrade, List<Snapshot> snapshots)
      throws IOException {
    Amend a = new Amend(file, header, mapper, refcounts, cache, clusterData);
    if (downgrade
        && header.compressionType() != 0
        && a.hasCompressedClusters(a.l1Tables(snapshots))) {
      return "Cannot downgrade an image with zstd compression type and existing compressed"
          + " clusters";
    }
    return order < header.refcountOrder() ? a.refcountTooWide(order) : null;
  }

  /**
   * Makes this new image encrypted with LUKS ({@code qcow2_set_up_encryption}, {@code
   * qcow2_crypto_hdr_init_func}): the LUKS area's clusters allocated after what the image holds,
   * zero-filled, the header and slot 0's key material written and synced with their refcounts, then
   * one header write sets {@code crypt_method} 2 and the extension that names the area. For an
   * image with no data yet (create): data written before would stay unencrypted.
   *
   * @throws IOException if the image is encrypted already, its header has an extension the encoder
   *     would drop, or a write or sync fails
   */
  public void setUpEncryption(Luks.Created luks) throws IOException {
    if (header.cryptMethod() != 0) {
      throw new IOException(path + ": encrypted already");
    }
    HeaderWriter.checkRewritable(file, header, "create the image anew");
    long areaBytes = luks.header().payloadOffset();
    int clusters = (int) ((areaBytes + cs - 1) / cs);
    long at = cache.allocate(clusters);
    for (long off = 0; off < clusters * cs; off += 1 << 20) {
      file.write(ByteBuffer.allocate((int) Math.min(1 << 20, clusters * cs - off)), at + off);
    }
    file.write(luks.header().encode(), at);
    long material = luks.header().slots().get(0).keyMaterialOffset();
    file.write(ByteBuffer.wrap(luks.keyMaterial()), at + material);
    cache.flush(); // the area and its refcounts before the header names it
    HeaderWriter.write(file, header.withCrypto(new Header.Crypto(at, areaBytes)));
  }

  private SnapshotEditor snapshotEditor() {
    return new SnapshotEditor(file, header, mapper, refcounts, guard, cache);
  }

  /**
   * Writes the new clusters of {@code step}: the head before {@code pos} and the tail after the
   * data, read as the guest sees them now, around {@code data} ({@code perform_cow}).
   */
  private void writeAllocated(Step step, ByteBuffer data, long pos) throws IOException {
    Allocation a = step.allocation();
    long start = step.claim().start();
    long copyFrom = start + a.cowStartFrom();
    long dataEnd = pos + data.remaining();
    long copyTo = start + (a.clusters() - 1) * cs + a.cowEndTo();
    // QEMU's is_zero_cow: a region that reads as zeros is not written into a fresh cluster
    // (encrypted, zeros in the file are not zeros to the guest: handle_alloc_space skips them)
    boolean skipZeros = a.fresh() && !clusterData.encrypted();
    if (skipZeros && guest.isZero(copyFrom, pos - copyFrom)) {
      copyFrom = pos;
    }
    if (skipZeros && guest.isZero(dataEnd, copyTo - dataEnd)) {
      copyTo = dataEnd;
    }
    long hostStart = a.hostOffset() + (copyFrom - start);
    if (copyFrom == pos && copyTo == dataEnd) {
      clusterData.write(data.duplicate(), hostStart);
      return;
    }
    if (copyTo - copyFrom > COW_BUFFER_BYTES) { // large data: no copy of it into a buffer
      if (pos > copyFrom) {
        clusterData.write(current(copyFrom, pos - copyFrom), hostStart);
      }
      clusterData.write(data.duplicate(), a.hostOffset() + (pos - start));
      if (copyTo > dataEnd) {
        clusterData.write(current(dataEnd, copyTo - dataEnd), a.hostOffset() + (dataEnd - start));
      }
      return;
    }
    // one write of head, data and tail (QEMU's perform_cow gathers them into one request)
    ByteBuffer b = cowBuffer((int) (copyTo - copyFrom));
    readCurrent(b.slice(0, (int) (pos - copyFrom)), copyFrom);
    b.put((int) (pos - copyFrom), data.duplicate(), 0, data.remaining());
    readCurrent(b.slice((int) (dataEnd - copyFrom), (int) (copyTo - dataEnd)), dataEnd);
    clusterData.write(b, hostStart);
  }

  /** The largest copy-on-write request written as one buffer (per worker thread). */
  private static final int COW_BUFFER_BYTES = 1 << 20;

  private static final ThreadLocal<ByteBuffer> COW_BUFFER = new ThreadLocal<>();

  /** This thread's buffer for a copy-on-write request of {@code bytes}, position 0. */
  private static ByteBuffer cowBuffer(int bytes) {
    ByteBuffer b = COW_BUFFER.get();
    if (b == null || b.capacity() < bytes) {
      b = ByteBuffer.allocateDirect(Math.max(bytes, 128 << 10));
      COW_BUFFER.set(b);
    }
    return b.clear().limit(bytes);
  }

  /** Reads the guest bytes at {@code pos} into all of {@code dst} (zeros past the disk's end). */
  private void readCurrent(ByteBuffer dst, long pos) throws IOException {
    int inDisk = (int) Math.max(0, Math.min(dst.remaining(), guest.size() - pos));
    if (inDisk > 0) {
      guest.read(dst.slice(0, inDisk), pos);
    }
    for (int i = inDisk; i < dst.remaining(); i++) {
      dst.put(i, (byte) 0);
    }
  }

  /** The {@code bytes} guest bytes at {@code pos} as they read now (zeros past the disk's end). */
  private ByteBuffer current(long pos, long bytes) throws IOException {
    ByteBuffer b = ByteBuffer.allocate((int) bytes);
    readCurrent(b, pos);
    return b;
  }
}
