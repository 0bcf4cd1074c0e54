package org.jqcowfs.qcow2;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.zip.DataFormatException;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.compress.Decompressor;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.metadata.Mapping;
import org.jqcowfs.storage.Storage;

/**
 * Reads the compressed clusters of one request (QEMU {@code qcow2_co_preadv_compressed}, with the
 * parallelism qemu-img convert gets from its coroutines and {@code qcow2_co_decompress}'s thread
 * pool). Compressed streams that lie next to each other in the image file (as qemu-img writes them)
 * are read with one pread; the clusters are then decompressed in parallel ({@link
 * ParallelTasks#runCpuBound}, on the cores no other request is decompressing on), and the first
 * failure fails the request. Thread-safe.
 */
final class CompressedClusterReader implements ClusterDecoder {
  /** Most bytes of compressed streams read for one group of clusters. */
  static final int MAX_GROUP_BYTES = 8 << 20;

  /** Largest gap in bytes between two streams that still reads them with one pread. */
  static final int MAX_GAP_BYTES = 4096;

  /** Builds the error for a part that cannot be decompressed. */
  @FunctionalInterface
  interface Corruption {
    ImageFormatException at(Mapping run, String what);
  }

  private final Storage file;
  private final Geometry geometry;
  private final Decompressor decompressor;
  private final Corruption corruption;
  private final ThreadLocal<ByteBuffer> clusterBuffers;
  private final ThreadLocal<ByteBuffer> streamBuffers = new ThreadLocal<>();

  CompressedClusterReader(
      Storage file, Geometry geometry, Decompressor decompressor, Corruption corruption) {
    this.file = file;
    this.geometry = geometry;
    this.decompressor = decompressor;
    this.corruption = corruption;
    int clusterBytes = (int) geometry.clusterSize();
    this.clusterBuffers = ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(clusterBytes));
  }

  /**
   * Fills every part's {@code dst} (positions are left as they were); each part's run is one
   * compressed cluster.
   *
   * @param parts in guest order
   * @throws IOException the first failure: a read error, or a {@link ImageFormatException} naming
   *     the cluster's L1/L2 place and host offset when a stream does not decompress
   */
  @Override
  public void read(List<Part> parts) throws IOException {
    // Each stream's host offset and stored bytes (the descriptor's upper bound, cut at the end of
    // the file), worked out once.
    int count = parts.size();
    long fileLength = file.length();
    long[] starts = new long[count];
    int[] lengths = new int[count];
    for (int i = 0; i < count; i++) {
      L2Entry.CompressedDescriptor d = descriptor(parts.get(i));
      starts[i] = d.hostOffset();
      lengths[i] = (int) Math.max(0, Math.min(d.maxLength(), fileLength - d.hostOffset()));
    }
    int from = 0;
    while (from < count) {
      int to = from;
      long groupBytes = 0;
      while (to < count && (to == from || groupBytes + lengths[to] <= MAX_GROUP_BYTES)) {
        groupBytes += lengths[to];
        to++;
      }
      readGroup(parts, from, to, starts, lengths, groupBytes, fileLength);
      from = to;
    }
  }

  private L2Entry.CompressedDescriptor descriptor(Part p) {
    return p.run().entry().compressedDescriptor(geometry.clusterBits());
  }

  /**
   * Reads the streams of {@code parts[from, to)} ({@code total} bytes; neighbours with one pread),
   * then decompresses them. Each pread covers its streams widened to {@link
   * Storage#DIRECT_ALIGNMENT} boundaries (cut at {@code fileLength}) into an aligned buffer, so
   * that streams the page cache does not hold are read around it, as plain clusters are.
   */
  private void readGroup(
      List<Part> parts, int from, int to, long[] starts, int[] lengths, long total, long fileLength)
      throws IOException {
    int n = to - from;
    long align = Storage.DIRECT_ALIGNMENT;
    // Each span may also hold the gaps between its streams (at most MAX_GAP_BYTES per stream) and
    // up to one alignment unit before and after it.
    ByteBuffer streams =
        streamBuffer(Math.toIntExact(total + (long) n * (MAX_GAP_BYTES + 2 * align)));
    ByteBuffer[] inputs = new ByteBuffer[n];
    int at = 0;
    for (int i = from; i < to; ) {
      // One span: streams that start at most MAX_GAP_BYTES after the previous one ends.
      long spanStart = starts[i];
      long spanEnd = spanStart + lengths[i];
      int j = i + 1;
      while (j < to && starts[j] >= spanStart && starts[j] <= spanEnd + MAX_GAP_BYTES) {
        spanEnd = Math.max(spanEnd, starts[j] + lengths[j]);
        j++;
      }
      long readStart = spanStart - spanStart % align;
      long readEnd = Math.min(fileLength, (spanEnd + align - 1) / align * align);
      file.readFully(streams.slice(at, (int) (readEnd - readStart)), readStart);
      for (int k = i; k < j; k++) {
        inputs[k - from] = streams.slice(at + (int) (starts[k] - readStart), lengths[k]);
      }
      at += (int) ((readEnd - readStart + align - 1) / align * align);
      i = j;
    }
    ParallelTasks.runCpuBound(n, i -> decompress(parts.get(from + i), inputs[i]));
  }

  /**
   * This thread's buffer for compressed streams, aligned, at least {@code bytes} long. It grows to
   * at least twice its capacity: a buffer it replaces is freed only by a garbage collection, which
   * a convert may never run, and growing by what each request needed left 101 buffers, 84 MB,
   * behind in a convert of the zstd bench image.
   */
  private ByteBuffer streamBuffer(int bytes) {
    ByteBuffer b = streamBuffers.get();
    if (b == null || b.capacity() < bytes) {
      int clusterBytes = (int) geometry.clusterSize();
      long grown = b == null ? clusterBytes + (clusterBytes >> 3) + 1024 : 2L * b.capacity();
      b = Storage.alignedBuffer((int) Math.max(bytes, Math.min(grown, Integer.MAX_VALUE >> 1)));
      streamBuffers.set(b);
    }
    return b.clear();
  }

  /** Decompresses one part's cluster from {@code in} and puts the wanted bytes into its dst. */
  private void decompress(Part p, ByteBuffer in) throws IOException {
    int from = (int) geometry.offsetInCluster(p.guestOffset());
    int clusterBytes = (int) geometry.clusterSize();
    ByteBuffer dst = p.dst();
    boolean whole = from == 0 && dst.remaining() == clusterBytes && dst.isDirect();
    ByteBuffer out = whole ? dst.slice() : clusterBuffers.get().clear();
    try {
      decompressor.decompress(in.duplicate(), out);
    } catch (DataFormatException e) {
      throw corruption.at(
          p.run(),
          "compressed cluster at host offset "
              + hex(descriptor(p).hostOffset())
              + " ("
              + decompressor.name()
              + "): "
              + e.getMessage());
    }
    if (!whole) {
      dst.duplicate().put(out.flip().slice(from, dst.remaining()));
    }
  }
}
