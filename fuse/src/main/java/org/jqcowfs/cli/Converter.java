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
import java.util.concurrent.atomic.AtomicLong;
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

  /** One block of zeros to compare with (read-only use, shared by the workers). */
  private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(ZERO_BLOCK);

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
      AtomicLong done = new AtomicLong();
      Chunk task =
          (start, len) -> {
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
          };
      try {
        // Neighbouring data extents (a compressed image has one per cluster) join into chunks
        // that end at CHUNK-aligned guest offsets.
        long chunkStart = -1;
        long chunkEnd = -1;
        for (long pos = 0; pos < size && failure.get() == null; ) {
          ChainExtent e = chain.chainStatus(pos, size - pos);
          if (!e.data()) {
            progress.accept(done.addAndGet(e.length()));
          } else {
            for (long off = e.start(); off < e.end(); ) {
              if (chunkStart >= 0 && off != chunkEnd) {
                task.submit(chunkStart, (int) (chunkEnd - chunkStart));
                chunkStart = -1;
              }
              if (chunkStart < 0) {
                chunkStart = off;
              }
              long limit = (chunkStart / CHUNK + 1) * CHUNK;
              chunkEnd = Math.min(e.end(), limit);
              if (chunkEnd == limit) {
                task.submit(chunkStart, (int) (chunkEnd - chunkStart));
                chunkStart = -1;
              }
              off = chunkEnd;
            }
          }
          pos = e.end();
        }
        if (chunkStart >= 0 && failure.get() == null) {
          task.submit(chunkStart, (int) (chunkEnd - chunkStart));
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

  /** Whether {@code b[from, to)} is all zeros ({@code mismatch} compares 8 bytes at a time). */
  private static boolean isZero(ByteBuffer b, int from, int to) {
    return b.slice(from, to - from).mismatch(ZEROS.slice(0, to - from)) < 0;
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

  /** Submits the guest range {@code [start, start + len)} to the workers. */
  @FunctionalInterface
  private interface Chunk {
    void submit(long start, int len);
  }

  private static Thread daemon(Runnable r) {
    Thread t = new Thread(r, "jqcowfs-convert");
    t.setDaemon(true);
    return t;
  }
}
