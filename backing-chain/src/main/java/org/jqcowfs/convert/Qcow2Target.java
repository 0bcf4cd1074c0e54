package org.jqcowfs.convert;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.qcow2.Qcow2Image;

/**
 * A new, empty qcow2 image as a {@link Converter}'s target ({@code qemu-img convert -O qcow2}, with
 * {@code -c} compressed). Each cluster is decided as a whole: one that reads as zeros is not
 * written (unless the image has a backing file: then it is made a zero cluster); otherwise it is
 * written whole (with extended L2 entries: its subclusters that do not read as zeros), as qemu-img
 * aligns its zero detection to the target's write-zeroes alignment; with compression the whole
 * cluster is compressed, in the worker's thread ({@link Qcow2Image#writeCompressed}).
 */
public final class Qcow2Target implements ConvertTarget {
  private final Qcow2Image image;
  private final boolean compress;
  private final int clusterBytes;
  private final int zeroBlock;
  private final long backingBytes;

  /**
   * @param target the new image (a qcow2 image, opened writable) and its backing chain, if any
   * @param compress write every cluster compressed ({@code -c})
   * @throws IllegalArgumentException if the top of {@code target} is not a qcow2 image
   */
  public Qcow2Target(BackingChain target, boolean compress) {
    if (!(target.top() instanceof Qcow2Image qcow2)) {
      throw new IllegalArgumentException(target.location() + " is not a qcow2 image");
    }
    this.image = qcow2;
    this.backingBytes = target.layers().size() > 1 ? target.layers().get(1).size() : -1;
    this.compress = compress;
    this.clusterBytes = (int) image.geometry().clusterSize();
    // qemu-img aligns its zero detection to the target's bl.pwrite_zeroes_alignment
    int subcluster = 1 << image.geometry().subclusterBits();
    this.zeroBlock = compress ? clusterBytes : Math.max(Converter.ZERO_BLOCK, subcluster);
  }

  @Override
  public int zeroBlock() {
    return zeroBlock;
  }

  @Override
  public int alignment() {
    return clusterBytes;
  }

  @Override
  public long backingBytes() {
    return backingBytes;
  }

  @Override
  public boolean serialWrites() {
    return false; // the writer orders its metadata itself; compression must run on all cores
  }

  @Override
  public void writeData(ByteBuffer chunk, long guestOffset, int[] runs, int count)
      throws IOException {
    int done = 0;
    for (int i = 0; i < count; i++) {
      int from = runs[2 * i];
      int to = runs[2 * i + 1];
      zeroGap(guestOffset, done, from);
      if (!compress) {
        image.write(chunk.slice(from, to - from), guestOffset + from);
      } else {
        for (int at = from; at < to; at += clusterBytes) { // runs of whole clusters (zeroBlock)
          image.writeCompressed(chunk.slice(at, Math.min(clusterBytes, to - at)), guestOffset + at);
        }
      }
      done = to;
    }
    zeroGap(guestOffset, done, chunk.limit());
  }

  /** Bytes {@code [from, to)} of a chunk at {@code guestOffset} read as zeros in the source. */
  private void zeroGap(long guestOffset, int from, int to) throws IOException {
    if (to > from && backingBytes >= 0) { // even past the backing file's end, as qemu-img does
      writeZeroes(guestOffset + from, to - from);
    }
  }

  @Override
  public void writeZeroes(long guestOffset, long bytes) throws IOException {
    image.writeZeroes(guestOffset, bytes, true);
  }
}
