package org.jqcowfs.chainops;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.function.LongConsumer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.jqcowfs.qcow2.Qcow2Image;

/**
 * {@code qemu-img commit} (QEMU 7.2 {@code img_commit}, the commit job's {@code commit_run}): what
 * the layers above a base hold is written into it, range by range as the chain's block status finds
 * them (zeros as write-zeroes), and flushed; then the top is emptied unless kept, so that it reads
 * through to the base. A crash before the base is flushed leaves the top reading as before (it
 * still holds every range); the base then reads partly new.
 */
public final class Commit {
  /** The most one step reads and writes. */
  static final int BUFFER_BYTES = 2 << 20;

  private Commit() {}

  /**
   * Commits the layers above layer {@code base} of {@code chain} into it (opened writable, at least
   * the chain's size), then, with {@code emptyTop}, empties the top (opened writable too).
   *
   * @param progress told the guest bytes done so far, of the chain's size
   * @throws IllegalArgumentException unless {@code 0 < base < layers} and the layers written are
   *     qcow2 (the base may be raw)
   * @throws IOException if a read, write or flush fails
   */
  public static void commit(BackingChain chain, int base, boolean emptyTop, LongConsumer progress)
      throws IOException {
    if (base < 1 || base >= chain.layers().size()) {
      throw new IllegalArgumentException("no layer " + base + " below the top to commit into");
    }
    Image into = chain.layers().get(base);
    long size = chain.size();
    if (into.size() < size) {
      throw new IllegalArgumentException(
          into.location() + " is smaller than " + chain.location() + ": grow it first");
    }
    ByteBuffer buf = ByteBuffer.allocateDirect(BUFFER_BYTES);
    long n;
    for (long offset = 0; offset < size; offset += n) {
      Extent e = chain.chainStatus(offset, Math.min(BUFFER_BYTES, size - offset));
      n = e.length();
      if (e.allocated() && e.depth() < base) { // a layer above the base decides: copied down
        if (e.zero()) {
          into.writeZeroes(offset, n, false);
        } else {
          ByteBuffer data = buf.clear().limit((int) n).slice();
          chain.read(data, offset);
          into.write(data.flip(), offset);
        }
      }
      progress.accept(offset + n);
    }
    into.flush();
    if (emptyTop) {
      if (!(chain.top() instanceof Qcow2Image top)) {
        throw new IllegalArgumentException(chain.location() + ": a raw image cannot be emptied");
      }
      top.makeEmpty();
    }
  }
}
