package org.jqcowfs.cli;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.LongConsumer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainExtent;

/**
 * Writes a backing chain's virtual disk to a raw file, the job of {@code qemu-img convert -O raw
 * -W}: block status skips ranges that are not data, {@code threads} workers read data in chunks and
 * write them out of order, and 4 KiB blocks of zeros inside data are left as holes ({@code -S 4k}).
 */
public final class Converter {
  /** Bytes per work item. */
  static final int CHUNK = 1 << 20;

  /** Zero-detection granularity in bytes, as qemu-img's default {@code -S 4k}. */
  static final int ZERO_BLOCK = 4096;

  private final BackingChain chain;
  private final int threads;

  /**
   * @param chain the source
   * @param threads parallel readers, {@code >= 1}
   */
  public Converter(BackingChain chain, int threads) {
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be >= 1: " + threads);
    }
    this.chain = chain;
    this.threads = threads;
  }

  /**
   * Writes the virtual disk to {@code out} (created or truncated; its holes stay holes).
   *
   * @param progress told the guest bytes done so far, from any thread
   * @throws IOException the first read or write error
   */
  public void convert(Path out, LongConsumer progress) throws IOException {
    long size = chain.size();
    try (RandomAccessFile raf = new RandomAccessFile(out.toFile(), "rw")) {
      raf.setLength(0);
      raf.setLength(size);
      FileChannel ch = raf.getChannel();
      ExecutorService pool = Executors.newFixedThreadPool(threads, Converter::daemon);
      Semaphore inFlight = new Semaphore(threads * 2);
      AtomicReference<IOException> failure = new AtomicReference<>();
      ReentrantLock writeLock = new ReentrantLock();
      ThreadLocal<ByteBuffer> buffers =
          ThreadLocal.withInitial(() -> ByteBuffer.allocateDirect(CHUNK + 4096).alignedSlice(4096));
      java.util.concurrent.atomic.AtomicLong done = new java.util.concurrent.atomic.AtomicLong();
      try {
        for (long pos = 0; pos < size && failure.get() == null; ) {
          ChainExtent e = chain.chainStatus(pos, size - pos);
          if (!e.data()) {
            progress.accept(done.addAndGet(e.length()));
          } else {
            for (long off = e.start(); off < e.end(); ) {
              long chunkEnd = Math.min(e.end(), (off / CHUNK + 1) * CHUNK);
              long start = off;
              int len = (int) (chunkEnd - off);
              inFlight.acquireUninterruptibly();
              pool.execute(
                  () -> {
                    try {
                      if (failure.get() == null) {
                        ByteBuffer buf = buffers.get().clear().limit(len);
                        chain.read(buf, start);
                        writeNonZero(ch, buf.flip(), start, writeLock);
                        progress.accept(done.addAndGet(len));
                      }
                    } catch (IOException | RuntimeException ex) {
                      failure.compareAndSet(
                          null, ex instanceof IOException io ? io : new IOException(ex));
                    } finally {
                      inFlight.release();
                    }
                  });
              off = chunkEnd;
            }
          }
          pos = e.end();
        }
      } finally {
        pool.shutdown();
        try {
          if (!pool.awaitTermination(365, TimeUnit.DAYS)) {
            throw new IOException("convert workers did not finish");
          }
        } catch (InterruptedException ie) {
          Thread.currentThread().interrupt();
          throw new InterruptedIOException("interrupted");
        }
      }
      if (failure.get() != null) {
        throw failure.get();
      }
    }
  }

  /**
   * Writes the blocks of {@code buf} that are not all zeros, coalescing neighbours; each write
   * holds {@code writeLock}, the zero scan does not.
   */
  static void writeNonZero(FileChannel ch, ByteBuffer buf, long offset, ReentrantLock writeLock)
      throws IOException {
    int n = buf.limit();
    int runStart = -1;
    for (int i = 0; i < n; i += ZERO_BLOCK) {
      int end = Math.min(n, i + ZERO_BLOCK);
      boolean zero = isZero(buf, i, end);
      if (!zero && runStart < 0) {
        runStart = i;
      } else if (zero && runStart >= 0) {
        write(ch, buf.slice(runStart, i - runStart), offset + runStart, writeLock);
        runStart = -1;
      }
    }
    if (runStart >= 0) {
      write(ch, buf.slice(runStart, n - runStart), offset + runStart, writeLock);
    }
  }

  private static boolean isZero(ByteBuffer b, int from, int to) {
    int i = from;
    for (; i + 8 <= to; i += 8) {
      if (b.getLong(i) != 0) {
        return false;
      }
    }
    for (; i < to; i++) {
      if (b.get(i) != 0) {
        return false;
      }
    }
    return true;
  }

  private static void write(FileChannel ch, ByteBuffer src, long pos, ReentrantLock writeLock)
      throws IOException {
    // Buffered writes to one file are serialized by the kernel's inode lock (i_rwsem) anyway;
    // taking a lock here first makes the other workers sleep instead of spinning on it in the
    // kernel (perf: rwsem_spin_on_owner was 26% of all CPU samples with 8 workers into tmpfs).
    writeLock.lock();
    try {
      long p = pos;
      while (src.hasRemaining()) {
        p += ch.write(src, p);
      }
    } finally {
      writeLock.unlock();
    }
  }

  private static Thread daemon(Runnable r) {
    Thread t = new Thread(r, "jqcowfs-convert");
    t.setDaemon(true);
    return t;
  }
}
