package org.jqcowfs.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.Mapping;
import org.jqcowfs.qcow2.write.GuestReader;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.Storage;

/**
 * The read path of one qcow2 layer (QEMU {@code qcow2_co_preadv_part}): each run of a request is
 * read by its {@link Mapping.ReadKind} from the data file, the decoder, zeros or the backing image
 * linked at open. It is also what the write side reads for copy-on-write ({@link GuestReader}).
 * Thread-safe.
 */
final class LayerReader implements GuestReader {
  private final Storage dataFile;
  private final Storage.BatchedReads batchedReads;
  private final Storage.CachedViews cachedViews;
  private final ClusterMapper mapper;
  private final ClusterDecoder decoder;
  private final BlockStatus blockStatus;
  private final long virtualSize;

  /** The image below, linked once when the chain opens; null for none. */
  private volatile Image backing;

  LayerReader(
      Storage dataFile,
      ClusterMapper mapper,
      ClusterDecoder decoder,
      BlockStatus blockStatus,
      long virtualSize) {
    this.dataFile = dataFile;
    this.batchedReads = dataFile.capability(Storage.BatchedReads.class);
    this.cachedViews = dataFile.capability(Storage.CachedViews.class);
    this.mapper = mapper;
    this.decoder = decoder;
    this.blockStatus = blockStatus;
    this.virtualSize = virtualSize;
  }

  /** Links the image below ({@link Image#setBacking}). */
  void setBacking(Image backing) {
    this.backing = backing;
  }

  /** The image below, or null before one is linked or when there is none. */
  Image backing() {
    return backing;
  }

  /**
   * As {@link Image#read} (QEMU {@code qcow2_co_preadv_part}), reading ranges this layer does not
   * allocate from the linked backing image (zeros where there is none or it is shorter than this
   * image). The request is mapped first; then its separate host ranges are read, and its compressed
   * clusters decompressed, in parallel ({@link ParallelTasks}, as QEMU's {@code
   * qcow2_co_preadv_part} hands each run to its aio task pool).
   *
   * @throws ImageFormatException for a corrupt mapping or compressed cluster in the range (naming
   *     L1/L2 place and guest offset)
   * @throws IOException if a host read fails; the whole request fails
   */
  @Override
  public void read(ByteBuffer dst, long guestOffset) throws IOException {
    Image.checkRange(guestOffset, dst.remaining(), virtualSize);
    Image backing = this.backing;
    long pos = guestOffset;
    List<ClusterDecoder.Part> decoded = null;
    List<HostRead> hostReads = null;
    while (dst.hasRemaining()) {
      Mapping run = mapper.map(pos, dst.remaining());
      int n = (int) run.length();
      ByteBuffer part = dst.slice(dst.position(), n);
      switch (run.readKind()) {
        case HOST -> {
          // Gathered: separate host ranges (a fragmented image) are read in parallel.
          if (hostReads == null) {
            hostReads = new ArrayList<>();
          }
          hostReads.add(new HostRead(run.hostOffset(), part));
        }
        case ZEROS -> Image.fillZeros(part);
        case BELOW -> readBacking(part, pos, backing);
        case DECODED -> {
          // Gathered, then read and decoded together (in parallel) once the request is mapped.
          if (decoded == null) {
            decoded = new ArrayList<>();
          }
          decoded.add(new ClusterDecoder.Part(run, part, pos));
        }
      }
      dst.position(dst.position() + n);
      pos += n;
    }
    if (hostReads != null) {
      readHostRanges(hostReads);
    }
    if (decoded != null) {
      decoder.read(decoded);
    }
  }

  /**
   * Reads separate ranges of the data file (a fragmented image): on this thread those the page
   * cache does not hold in Linux AIO batches and those it holds from it ({@link
   * Storage.BatchedReads#readRanges}), any others in parallel on {@link ParallelTasks}' I/O
   * helpers, as before there was AIO. The figures are in {@code LinuxAio}.
   */
  private void readHostRanges(List<HostRead> reads) throws IOException {
    int n = reads.size();
    boolean[] done = new boolean[n];
    if (n > 1) {
      ByteBuffer[] dsts = new ByteBuffer[n];
      long[] positions = new long[n];
      for (int i = 0; i < n; i++) {
        dsts[i] = reads.get(i).dst();
        positions[i] = reads.get(i).hostOffset();
      }
      done = batchedReads != null ? batchedReads.readRanges(dsts, positions) : done;
    }
    int[] left = new int[n];
    int count = 0;
    for (int i = 0; i < n; i++) {
      if (!done[i]) {
        left[count++] = i;
      }
    }
    ParallelTasks.run(
        count,
        ParallelTasks.IO_HELPERS,
        k -> dataFile.readFully(reads.get(left[k]).dst(), reads.get(left[k]).hostOffset()));
  }

  /**
   * A view of the range when one {@link Mapping.ReadKind#HOST} run maps all of it (contiguous in
   * the data file, as {@link #read} would read it with one {@code readFully}) and the page cache
   * holds it; null for anything else: zero, unallocated or decoded (compressed) parts, runs split
   * between host ranges or L2 tables, or bytes not cached.
   */
  CachedView cachedView(long guestOffset, int length) throws IOException {
    Image.checkRange(guestOffset, length, virtualSize);
    Mapping run = mapper.map(guestOffset, length);
    return run.readKind() == Mapping.ReadKind.HOST && run.length() == length
        ? (cachedViews != null ? cachedViews.mapCached(run.hostOffset(), length) : null)
        : null;
  }

  /** A contiguous range of the data file and where its bytes go. */
  private record HostRead(long hostOffset, ByteBuffer dst) {}

  private static void readBacking(ByteBuffer part, long pos, Image backing) throws IOException {
    long avail =
        backing == null ? 0 : Math.max(0, Math.min(part.remaining(), backing.size() - pos));
    if (avail > 0) {
      backing.read(part.slice(part.position(), (int) avail), pos);
      part.position(part.position() + (int) avail);
    }
    Image.fillZeros(part);
  }

  @Override
  public long size() {
    return virtualSize;
  }

  /**
   * Whether block status says zeros for the whole range, through this layer, then through the
   * backing image (QEMU {@code is_zero}).
   */
  @Override
  public boolean isZero(long pos, long bytes) throws IOException {
    long end = Math.min(pos + bytes, virtualSize);
    while (pos < end) {
      Extent e = blockStatus.at(pos, end - pos);
      long n = Math.min(e.length(), end - pos);
      if (e.allocated() ? !e.zero() : !belowIsZero(pos, n)) {
        return false;
      }
      pos += n;
    }
    return true;
  }

  private boolean belowIsZero(long pos, long bytes) throws IOException {
    Image below = backing;
    long end = below == null ? pos : Math.min(pos + bytes, below.size());
    while (pos < end) {
      Extent e = below.blockStatus(pos, end - pos);
      if (e.allocated() && !e.zero()) {
        return false; // data somewhere below (an unallocated chain reads as zeros)
      }
      pos += Math.min(e.length(), end - pos);
    }
    return true;
  }
}
