package org.jqcowfs.qcow2.write;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.qcow2.crypto.Luks;
import org.jqcowfs.qcow2.format.BitmapOp;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The changes of a writable image's format that {@code qemu-img} makes as the last act on an open
 * image (QEMU {@code qcow2_co_truncate}, {@code qcow2_change_backing_file}, {@code
 * qcow2-snapshot.c}, {@code qcow2_amend_options}, {@code qcow2_set_up_encryption}, {@code
 * qcow2_make_empty}, and the bitmap edits of {@code qemu-img bitmap}). Most first end the writes
 * ({@link Qcow2Writer#close}); emptying and setting up encryption flush their own. After one, the
 * image is only to be closed.
 */
public final class FormatChanges {
  private static final Logger LOG = LoggerFactory.getLogger(FormatChanges.class);

  private final Qcow2Writer writer;
  private final GuestReader guest;
  private final Location path;
  private final Storage file;
  private final Header header;
  private final long cs;
  private final ClusterMapper mapper;
  private final Refcounts refcounts;
  private final OverlapGuard guard;
  private final MetadataCache cache;
  private final ZeroesAndDiscards zeroes;
  private final PersistentBitmaps bitmaps;
  private final DataWriter clusterData;

  FormatChanges(
      Qcow2Writer writer,
      GuestReader guest,
      Storage file,
      Header header,
      ClusterMapper mapper,
      Refcounts refcounts,
      OverlapGuard guard,
      MetadataCache cache,
      ZeroesAndDiscards zeroes,
      PersistentBitmaps bitmaps,
      DataWriter clusterData) {
    this.writer = writer;
    this.guest = guest;
    this.path = file.location();
    this.file = file;
    this.header = header;
    this.cs = header.geometry().clusterSize();
    this.mapper = mapper;
    this.refcounts = refcounts;
    this.guard = guard;
    this.cache = cache;
    this.zeroes = zeroes;
    this.bitmaps = bitmaps;
    this.clusterData = clusterData;
  }

  /**
   * Ends the writes ({@link Qcow2Writer#close}), then runs {@code ops} on bitmap {@code name} and
   * stores the result ({@link BitmapEditor}, as {@code qemu-img bitmap}); the image is then only to
   * be closed.
   *
   * @throws IllegalArgumentException if QEMU would refuse an operation (nothing is written then)
   * @throws org.jqcowfs.image.ImageFormatException for a v2 image, a header with an extension the
   *     header writer does not know, or a damaged bitmap
   * @throws IOException if the image cannot be read or written
   */
  public void editBitmaps(String name, List<BitmapOp> ops) throws IOException {
    writer.close();
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
   * Ends the writes ({@link Qcow2Writer#close}), then gives the virtual disk {@code newBytes} bytes
   * ({@link Truncate}, QEMU {@code qcow2_co_truncate}); the image is then only to be closed.
   * Persistent dirty bitmaps are kept in use through it, every one, then stored anew at the new
   * size ({@link BitmapEditor#resize}, as QEMU's block layer truncates them and stores them at
   * close): grown clean, shrunk to what is left.
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
    writer.close();
    new Truncate(file, header, refcounts, guard, cache, zeroes, writer, this)
        .to(newBytes, zeroNewRange);
    if (resizeBitmaps) {
      new BitmapEditor(file, refcounts, cache, guard).resize();
    }
  }

  /**
   * Ends the writes ({@link Qcow2Writer#close}), then rewrites the header once, naming {@code name}
   * (null: none) as the backing file with format {@code format}, and syncs (QEMU {@code
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
    writer.close();
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
   * Ends the writes ({@link Qcow2Writer#close}), then creates internal snapshot {@code name} of the
   * active disk ({@link SnapshotEditor#create}, QEMU {@code qcow2_snapshot_create}); the image is
   * then only to be closed.
   *
   * @param existing the snapshots the table holds now, in its order
   * @throws IllegalArgumentException if QEMU would refuse it (a refcount would overflow, too many
   *     snapshots); nothing is written then
   * @throws IOException if a read, write or sync fails
   */
  public void createSnapshot(String name, List<Snapshot> existing, long dateSeconds, long dateNanos)
      throws IOException {
    writer.close();
    snapshotEditor().create(name, existing, guest.size(), dateSeconds, dateNanos);
  }

  /**
   * Ends the writes ({@link Qcow2Writer#close}), then deletes entry {@code index} of the {@code
   * count} snapshots ({@link SnapshotEditor#delete}, QEMU {@code qcow2_snapshot_delete}); the image
   * is then only to be closed.
   *
   * @throws IOException if a read, write or sync fails
   */
  public void deleteSnapshot(Snapshot victim, int index, int count) throws IOException {
    writer.close();
    snapshotEditor().delete(victim, index, count);
  }

  /**
   * Ends the writes ({@link Qcow2Writer#close}), then makes {@code target}'s L1 table the active
   * one ({@link SnapshotEditor#apply}, QEMU {@code qcow2_snapshot_goto}); the disk must have the
   * snapshot's size already. The image is then only to be closed.
   *
   * @throws IllegalArgumentException if QEMU would refuse it; nothing is written then
   * @throws IOException if a read, write or sync fails
   */
  public void applySnapshot(Snapshot target) throws IOException {
    writer.close();
    snapshotEditor().apply(target);
  }

  /**
   * Ends the writes ({@link Qcow2Writer#close}); then the format changes of {@code qemu-img amend}
   * in QEMU's order ({@link Amend}), each durable before the header names it: {@code upgrade} to
   * v3, the lazy refcounts bit ({@code lazy}, null: unchanged), {@code resize} (null: none), the
   * refcount order ({@code order}), and {@code downgrade} to v2 with the zero clusters of every L1
   * table expanded first. The caller checked what QEMU refuses ({@link #amendRefusal}); the image
   * is then only to be closed.
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
    writer.close();
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
}
