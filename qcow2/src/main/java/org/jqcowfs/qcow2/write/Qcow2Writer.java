package org.jqcowfs.qcow2.write;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.qcow2.compress.Compressor;
import org.jqcowfs.qcow2.crypto.SectorCipher;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.qcow2.metadata.L2Cache;
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
  private final CompressedClusters compressed;
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
    this.compressed =
        new CompressedClusters(file, header.geometry(), mapper, refcounts, guard, cache, allocator);
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
    CompressedClusters.CompressedStep step = compressed.prepare(guestOffset, bytes);
    boolean done = false;
    try {
      file.write(out.limit(bytes).position(0), step.hostOffset());
      done = true;
    } finally {
      compressed.finish(step, done);
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

  /** As {@link Preallocation#run}, then {@link #flush}. */
  public void preallocate(boolean reserve, boolean zeroes) throws IOException {
    new Preallocation(file, header.geometry(), mapper, refcounts, guard, cache, allocator)
        .run(reserve, zeroes, guest.size());
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
   * The changes to the image's format ({@link FormatChanges}): bitmaps, size, backing file,
   * snapshots, format options, encryption, emptying; after one, the image is only to be closed.
   */
  public FormatChanges formatChanges() {
    return new FormatChanges(
        this, guest, file, header, mapper, refcounts, guard, cache, zeroes, bitmaps, clusterData);
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
