package org.jqcowfs.chainops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.function.LongConsumer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.jqcowfs.qcow2.Qcow2Image;

/**
 * {@code qemu-img rebase} (QEMU 7.2 {@code img_rebase}): a qcow2 image gets another backing file.
 * Safe, its guest bytes stay as they were: every range the top does not allocate, where the old
 * backing chain and the new one read differently, is written into the top first (in runs of
 * 512-byte sectors, as QEMU compares them; as write-zeroes past the old backing file's end), then
 * the header names the new file. Unsafe ({@code -u}), only the header changes.
 */
public final class Rebase {
  /** QEMU's IO_BUF_SIZE: the most one step reads of each backing chain. */
  static final int IO_BUF_BYTES = 2 << 20;

  static final int SECTOR_BYTES = 512;

  private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(IO_BUF_BYTES);

  private Rebase() {}

  /**
   * Rebases the top of {@code chain} (opened with its top writable, over its old backing chain)
   * onto {@code newBacking} (null: none, which flattens it), then names {@code newName} with {@code
   * newFormat} in its header ({@link org.jqcowfs.qcow2.Qcow2Editor#changeBackingFile}); a crash
   * before the header is rewritten leaves the top reading as before over its old backing file.
   *
   * @param progress told the guest bytes done so far, of the top's size
   * @throws IllegalArgumentException if the top is not a qcow2 image
   * @throws IOException if a read, write or the header rewrite fails
   */
  public static void rebase(
      BackingChain chain,
      BackingChain newBacking,
      String newName,
      String newFormat,
      LongConsumer progress)
      throws IOException {
    Qcow2Image top = qcow2(chain.top());
    Image old = chain.layers().size() > 1 ? chain.below(1) : null;
    long size = top.size();
    long oldSize = old == null ? 0 : old.size();
    long newSize = newBacking == null ? 0 : newBacking.size();
    ByteBuffer bufOld = ByteBuffer.allocateDirect(IO_BUF_BYTES);
    ByteBuffer bufNew = ByteBuffer.allocateDirect(IO_BUF_BYTES);
    long n;
    for (long offset = 0; offset < size; offset += n) {
      n = Math.min(IO_BUF_BYTES, size - offset);
      Extent e = top.blockStatus(offset, n);
      n = e.length();
      if (e.allocated()) {
        continue; // the top decides these bytes whatever lies below
      }
      boolean oldIsZero = offset >= oldSize;
      if (!oldIsZero) {
        n = Math.min(n, oldSize - offset);
      }
      if (newBacking != null && offset < newSize) {
        n = Math.min(n, newSize - offset);
      }
      ByteBuffer was = fill(old, oldIsZero, bufOld, offset, n);
      ByteBuffer now = fill(newBacking, offset >= newSize, bufNew, offset, n);
      int written = 0;
      while (written < n) {
        int run = sameRun(was, now, written, (int) n);
        if (differs(was, now, written)) {
          if (oldIsZero) {
            top.writeZeroes(offset + written, run, false);
          } else {
            top.write(was.slice(written, run), offset + written);
          }
        }
        written += run;
      }
      progress.accept(offset + n);
    }
    top.editor().changeBackingFile(newName, newFormat);
  }

  /**
   * Names {@code newName} with {@code newFormat} in the header of {@code top} (opened alone,
   * writable) and nothing else: {@code qemu-img rebase -u}.
   *
   * @throws IOException if the header cannot be rewritten
   */
  public static void rebaseUnsafe(Image top, String newName, String newFormat) throws IOException {
    qcow2(top).editor().changeBackingFile(newName, newFormat);
  }

  private static Qcow2Image qcow2(Image image) {
    if (!(image instanceof Qcow2Image q)) {
      throw new IllegalArgumentException(
          image.location() + ": only a qcow2 image has a backing file to change");
    }
    return q;
  }

  /** {@code n} bytes at {@code offset} of {@code image}, or zeros. */
  private static ByteBuffer fill(Image image, boolean zeros, ByteBuffer buf, long offset, long n)
      throws IOException {
    ByteBuffer dst = buf.clear().limit((int) n).slice();
    if (zeros || image == null) {
      return dst.put(ZEROS.slice(0, (int) n)).flip();
    }
    image.read(dst, offset);
    return dst.flip();
  }

  private static boolean differs(ByteBuffer a, ByteBuffer b, int at) {
    int len = Math.min(SECTOR_BYTES, a.limit() - at);
    return a.slice(at, len).mismatch(b.slice(at, len)) >= 0;
  }

  /**
   * Bytes from {@code at} (before {@code end}) in sectors that all differ, or all match, as the
   * first does: QEMU's {@code compare_buffers}.
   */
  private static int sameRun(ByteBuffer a, ByteBuffer b, int at, int end) {
    boolean first = differs(a, b, at);
    int i = at + Math.min(SECTOR_BYTES, end - at);
    while (i < end && differs(a, b, i) == first) {
      i += Math.min(SECTOR_BYTES, end - i);
    }
    return i - at;
  }
}
