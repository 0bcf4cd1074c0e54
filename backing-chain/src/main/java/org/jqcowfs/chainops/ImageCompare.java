package org.jqcowfs.chainops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.function.LongConsumer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.image.Extent;

/**
 * {@code qemu-img compare} (QEMU 7.2 {@code img_compare}): whether two chains read the same guest
 * bytes, walking both chains' block status so that ranges both read as zeros are not read, and
 * naming the first 512-byte sector that differs.
 */
public final class ImageCompare {
  /** QEMU's IO_BUF_SIZE: the most one comparison reads of each image. */
  static final int IO_BUF_BYTES = 2 << 20;

  /** Mismatches are reported at the start of the first differing sector, as QEMU does. */
  static final int SECTOR_BYTES = 512;

  private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(IO_BUF_BYTES);

  private ImageCompare() {}

  /** How a comparison ended. */
  public enum Outcome {
    /** The guest bytes are the same (the longer image reads zeros past the shorter). */
    IDENTICAL,
    /** The bytes differ from {@link Result#offset}. */
    CONTENT_MISMATCH,
    /** Strict mode: the block status differs at {@link Result#offset}. */
    STATUS_MISMATCH,
    /** Strict mode: the virtual sizes differ. */
    SIZE_MISMATCH
  }

  /**
   * @param outcome how it ended
   * @param offset guest offset in bytes of the mismatch (sector aligned), or -1
   * @param sizesDiffer whether the virtual sizes differ (qemu-img warns once the common part
   *     matched, before it checks the rest of the longer image)
   */
  public record Result(Outcome outcome, long offset, boolean sizesDiffer) {}

  /** A block status query that failed: qemu-img's exit 3. */
  public static final class StatusException extends IOException {
    StatusException(String message, IOException cause) {
      super(message, cause);
    }
  }

  /** A read that failed: qemu-img's exit 4. */
  public static final class ReadException extends IOException {
    ReadException(String message, IOException cause) {
      super(message, cause);
    }
  }

  /**
   * Compares {@code a} with {@code b}. Not strict, images of different sizes are identical when the
   * common part is and the rest of the longer one reads as zeros; strict, different sizes or block
   * status (allocated, data, zero, offset valid, end of file) are a mismatch.
   *
   * @param progress told the guest bytes compared so far, of the longer image's size
   * @throws StatusException if a chain's block status fails
   * @throws ReadException if a read fails
   */
  public static Result compare(
      BackingChain a, BackingChain b, boolean strict, LongConsumer progress) throws IOException {
    long sizeA = a.size();
    long sizeB = b.size();
    boolean sizesDiffer = sizeA != sizeB;
    if (strict && sizesDiffer) {
      return new Result(Outcome.SIZE_MISMATCH, -1, true);
    }
    long common = Math.min(sizeA, sizeB);
    ByteBuffer bufA = ByteBuffer.allocateDirect(IO_BUF_BYTES);
    ByteBuffer bufB = ByteBuffer.allocateDirect(IO_BUF_BYTES);
    long offset = 0;
    while (offset < common) {
      Extent sa = status(a, offset, sizeA - offset);
      Extent sb = status(b, offset, sizeB - offset);
      long chunk = Math.min(Math.min(sa.length(), sb.length()), common - offset);
      if (strict && !sameStatus(sa, sizeA, sb, sizeB)) {
        return new Result(Outcome.STATUS_MISMATCH, offset, false);
      }
      if (!(sa.zero() && sb.zero())) {
        if (sa.allocated() == sb.allocated()) {
          if (sa.allocated()) {
            chunk = Math.min(chunk, IO_BUF_BYTES);
            ByteBuffer x = read(a, bufA, offset, chunk);
            ByteBuffer y = read(b, bufB, offset, chunk);
            int m = x.mismatch(y);
            if (m >= 0) {
              return new Result(Outcome.CONTENT_MISMATCH, offset + sectorOf(m), false);
            }
          } // neither chain allocates it: both read zeros
        } else {
          chunk = Math.min(chunk, IO_BUF_BYTES);
          long nonZero =
              sa.allocated() ? nonZero(a, bufA, offset, chunk) : nonZero(b, bufB, offset, chunk);
          if (nonZero >= 0) {
            return new Result(Outcome.CONTENT_MISMATCH, nonZero, false);
          }
        }
      }
      offset += chunk;
      progress.accept(offset);
    }
    if (sizesDiffer) { // the rest of the longer image must read as zeros
      BackingChain over = sizeA > sizeB ? a : b;
      ByteBuffer buf = over == a ? bufA : bufB;
      long size = over.size();
      while (offset < size) {
        Extent s = status(over, offset, size - offset);
        long chunk = s.length();
        if (s.allocated() && !s.zero()) {
          chunk = Math.min(chunk, IO_BUF_BYTES);
          long nonZero = nonZero(over, buf, offset, chunk);
          if (nonZero >= 0) {
            return new Result(Outcome.CONTENT_MISMATCH, nonZero, true);
          }
        }
        offset += chunk;
        progress.accept(offset);
      }
    }
    return new Result(Outcome.IDENTICAL, -1, sizesDiffer);
  }

  /** The flags QEMU's strict mode compares: allocated, data, zero, offset valid, EOF. */
  private static boolean sameStatus(Extent a, long sizeA, Extent b, long sizeB) {
    return a.allocated() == b.allocated()
        && a.data() == b.data()
        && a.zero() == b.zero()
        && a.hasHostOffset() == b.hasHostOffset()
        && (a.end() == sizeA) == (b.end() == sizeB);
  }

  private static long sectorOf(int byteIndex) {
    return byteIndex & ~(long) (SECTOR_BYTES - 1);
  }

  private static Extent status(BackingChain chain, long offset, long maxLength)
      throws StatusException {
    try {
      return chain.chainStatus(offset, maxLength);
    } catch (IOException e) {
      throw new StatusException(
          "Sector allocation test failed for " + chain.location() + ": " + e.getMessage(), e);
    }
  }

  private static ByteBuffer read(BackingChain chain, ByteBuffer buf, long offset, long bytes)
      throws ReadException {
    ByteBuffer dst = buf.clear().limit((int) bytes).slice();
    try {
      chain.read(dst, offset);
    } catch (IOException e) {
      throw new ReadException(
          "Error while reading offset "
              + offset
              + " of "
              + chain.location()
              + ": "
              + e.getMessage(),
          e);
    }
    return dst.flip();
  }

  /** The guest offset of the first sector in the range that is not all zeros, or -1. */
  private static long nonZero(BackingChain chain, ByteBuffer buf, long offset, long bytes)
      throws ReadException {
    ByteBuffer data = read(chain, buf, offset, bytes);
    int m = data.mismatch(ZEROS.duplicate().clear().limit((int) bytes));
    return m < 0 ? -1 : offset + sectorOf(m);
  }
}
