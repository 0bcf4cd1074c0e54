package org.jqcowfs.chainops;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.image.Extent;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.format.BitmapDirectory;
import org.jqcowfs.qcow2.format.Header;

/**
 * {@code qemu-img measure} (QEMU 7.2 {@code qcow2_measure}, {@code raw_measure}): the bytes a new
 * image would take, for a disk of a given size or for the content of a chain.
 */
public final class Measure {
  private Measure() {}

  /**
   * The answer.
   *
   * @param requiredBytes what the new image needs for this content ("required size")
   * @param fullyAllocatedBytes what it needs with every cluster allocated
   * @param bitmapsBytes what copying the input's persistent dirty bitmaps adds, or -1 when the
   *     output cannot hold them or there is no qcow2 input ("bitmaps size" is then not shown)
   */
  public record Result(long requiredBytes, long fullyAllocatedBytes, long bitmapsBytes) {}

  /**
   * A qcow2 output's size ({@code qcow2_measure}): metadata for a fully allocated disk (header, L2
   * and L1 tables, refcount blocks and table), plus the clusters the input's block status finds
   * data in (all of them with a backing file or full/falloc preallocation).
   *
   * @param in the input chain, or null to measure {@code virtualBytes}
   * @param virtualBytes the disk's size without an input
   * @param clusterBits log2 of the output's cluster size
   * @param refcountOrder log2 of its refcount bits
   * @param version 2 or 3
   * @param extendedL2 whether its L2 entries are extended
   * @param fullPreallocation {@code preallocation=full} or {@code falloc}
   * @param backingFile whether the output gets a backing file
   * @param luksBytes the LUKS area's bytes of an encrypted output (rounded up to clusters, as
   *     {@code qcow2_measure} adds them), or 0
   * @throws IllegalArgumentException with QEMU's message when the L1 table would be too large
   * @throws IOException if the input's block status fails
   */
  public static Result qcow2(
      BackingChain in,
      long virtualBytes,
      int clusterBits,
      int refcountOrder,
      int version,
      boolean extendedL2,
      boolean fullPreallocation,
      boolean backingFile,
      long luksBytes)
      throws IOException {
    long cs = 1L << clusterBits;
    long l2EntryBytes = extendedL2 ? 16 : 8;
    long size = roundUp(virtualBytes, cs);
    long l2Tables = ceil(size / cs, cs / l2EntryBytes);
    if (l2Tables * 8 > Header.MAX_L1_BYTES) {
      throw new IllegalArgumentException(
          "The image size is too large (try using a larger cluster size)");
    }
    long required = 0;
    if (in != null) {
      long inBytes = in.size();
      size = roundUp(inBytes, cs);
      if (backingFile) {
        required = size; // the new backing file may share nothing with the input
      } else {
        long pnum;
        for (long offset = 0; offset < inBytes; offset += pnum) {
          Extent e = in.chainStatus(offset, inBytes - offset);
          pnum = e.length();
          if (e.zero()) {
            continue; // zeros need no cluster (there is no backing file)
          }
          if (e.data() && e.allocated()) {
            pnum = roundUp(offset + pnum, cs) - offset; // on to the end of the cluster
            required += offset % cs + pnum;
          }
        }
      }
    }
    if (fullPreallocation) {
      required = size;
    }
    long fully = roundUp(luksBytes, cs) + preallocatedBytes(size, cs, refcountOrder, extendedL2);
    long bitmaps = -1;
    if (version >= 3 && in != null && in.top() instanceof Qcow2Image q) {
      bitmaps = bitmapsBytes(q, cs);
    }
    return new Result(fully - size + required, fully, bitmaps);
  }

  /**
   * A raw output's size ({@code raw_measure}): the input's size, or {@code virtualBytes} rounded up
   * to 512; unallocated bytes count as well.
   */
  public static Result raw(BackingChain in, long virtualBytes) {
    long bytes = in != null ? in.size() : roundUp(virtualBytes, 512);
    return new Result(bytes, bytes, -1);
  }

  /**
   * QEMU's {@code qcow2_calc_prealloc_size}: the header, the L2 and L1 tables and the refcount
   * structures of a fully allocated disk of {@code size} bytes, and the data clusters.
   */
  static long preallocatedBytes(long size, long cs, int refcountOrder, boolean extendedL2) {
    long l2EntryBytes = extendedL2 ? 16 : 8;
    long aligned = roundUp(size, cs);
    long meta = cs; // the header
    long l2Entries = roundUp(aligned / cs, cs / l2EntryBytes);
    meta += l2Entries * l2EntryBytes;
    long l1Entries = roundUp(l2Entries * l2EntryBytes / cs, cs / 8);
    meta += l1Entries * 8;
    meta += refcountMetadataBytes((meta + aligned) / cs, cs, refcountOrder);
    return meta + aligned;
  }

  /**
   * QEMU's {@code qcow2_refcount_metadata_size}: the refcount blocks and table clusters that count
   * {@code clusters} clusters and themselves, found as the fixed point of that recursion.
   */
  static long refcountMetadataBytes(long clusters, long cs, int refcountOrder) {
    long blocksPerTableCluster = cs / 8;
    long refcountsPerBlock = cs * 8 / (1L << refcountOrder);
    long table = 0;
    long blocks = 0;
    long n = 0;
    long last;
    do {
      last = n;
      blocks = ceil(clusters + table + blocks, refcountsPerBlock);
      table = ceil(blocks, blocksPerTableCluster);
      n = clusters + blocks + table;
    } while (n != last);
    return (blocks + table) * cs;
  }

  /**
   * QEMU's {@code qcow2_get_persistent_dirty_bitmap_size}: for each bitmap of {@code image}, its
   * data clusters (all of them) and table, and the directory, in clusters of {@code cs} bytes.
   */
  static long bitmapsBytes(Qcow2Image image, long cs) throws IOException {
    long bytes = 0;
    long directory = 0;
    for (BitmapDirectory.Bitmap b : image.bitmaps()) {
      long bitmapBytes = ceil(ceil(image.size(), b.granularity()), 8);
      long clusters = ceil(bitmapBytes, cs);
      bytes += clusters * cs;
      bytes += roundUp(clusters * 8, cs);
      directory += roundUp(24 + b.name().getBytes(StandardCharsets.UTF_8).length, 8);
    }
    return bytes + roundUp(directory, cs);
  }

  private static long ceil(long a, long b) {
    return (a + b - 1) / b;
  }

  private static long roundUp(long a, long b) {
    return ceil(a, b) * b;
  }
}
