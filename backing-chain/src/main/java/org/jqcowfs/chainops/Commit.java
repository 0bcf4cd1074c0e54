package org.jqcowfs.chainops;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.LongConsumer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.jqcowfs.qcow2.Qcow2Image;

/**
 * {@code qemu-img commit} (QEMU 7.2 {@code img_commit}, the commit job's {@code commit_run}): what
 * the layers above a base hold is written into it, range by range as the chain's block status finds
 * them (zeros as write-zeroes), by parallel workers, and flushed; then the top is emptied unless
 * kept, so that it reads through to the base. A crash before the base is flushed leaves the top
 * reading as before (it still holds every range); the base then reads partly new.
 */
public final class Commit {
  /** The most one step reads and writes. */
  static final int BUFFER_BYTES = 2 << 20;

  /** Copying workers: twice the CPUs (as convert), at most 8. */
  static final int THREADS = Math.min(8, 2 * Runtime.getRuntime().availableProcessors());

  private Commit() {}

  /**
   * Commits the layers above layer {@code base} of {@code chain} into it (opened writable, at least
   * the chain's size), then, with {@code emptyTop}, empties the top (opened writable too).
   *
   * @param progress told the guest bytes done so far, of the chain's size, from any thread
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
    // Workers take BUFFER_BYTES-aligned units in guest order; the writes into the base are
    // independent (the image's writer orders its own metadata), so the copy runs on all cores.
    AtomicLong next = new AtomicLong();
    AtomicLong done = new AtomicLong();
    AtomicReference<IOException> failure = new AtomicReference<>();
    Runnable worker =
        () -> {
          ByteBuffer buf = ByteBuffer.allocateDirect(BUFFER_BYTES);
          try {
            for (long unit;
                failure.get() == null && (unit = next.getAndAdd(BUFFER_BYTES)) < size; ) {
              long end = Math.min(size, unit + BUFFER_BYTES);
              copy(chain, into, base, buf, unit, end);
              progress.accept(done.addAndGet(end - unit));
            }
          } catch (IOException | RuntimeException e) {
            failure.compareAndSet(null, e instanceof IOException io ? io : new IOException(e));
          }
        };
    int threads = (int) Math.min(THREADS, (size + BUFFER_BYTES - 1) / BUFFER_BYTES);
    List<Thread> workers = new ArrayList<>();
    for (int i = 0; i < threads; i++) {
      Thread t = new Thread(worker, "jqcowfs-commit");
      t.setDaemon(true);
      t.start();
      workers.add(t);
    }
    for (Thread t : workers) {
      try {
        t.join();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        failure.compareAndSet(null, new InterruptedIOException("interrupted"));
      }
    }
    if (failure.get() != null) {
      throw failure.get();
    }
    into.flush();
    if (emptyTop) {
      if (!(chain.top() instanceof Qcow2Image top)) {
        throw new IllegalArgumentException(chain.location() + ": a raw image cannot be emptied");
      }
      top.editor().makeEmpty();
    }
  }

  /** Copies what the layers above {@code base} decide in guest range {@code [from, to)}. */
  private static void copy(
      BackingChain chain, Image into, int base, ByteBuffer buf, long from, long to)
      throws IOException {
    long n;
    for (long offset = from; offset < to; offset += n) {
      Extent e = chain.chainStatus(offset, to - offset);
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
    }
  }
}
