package org.jqcowfs.cli;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.LongConsumer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainExtent;

/**
 * Writes a backing chain's virtual disk to a raw file, the job of {@code qemu-img convert -O raw
 * -W}: block status skips ranges that are not data, {@code threads} workers read data in chunks and
 * write them out of order ({@link ChunkWriter}), and 4 KiB blocks of zeros inside data are left as
 * holes ({@code -S 4k}).
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
    try (RandomAccessFile raf = new RandomAccessFile(out.toFile(), "rw")) {
      raf.setLength(0);
      raf.setLength(chain.size());
      ChunkWriter writer = new ChunkWriter(raf.getChannel());
      AtomicLong done = new AtomicLong();
      Planner planner = new Planner(chain, skipped -> progress.accept(done.addAndGet(skipped)));
      // Buffers of chunks read and not yet written: two per worker, so that a worker whose chunk
      // waits for the writer goes on with the next one.
      Semaphore buffersLeft = new Semaphore(threads * 2);
      ConcurrentLinkedQueue<ByteBuffer> buffers = new ConcurrentLinkedQueue<>();
      AtomicReference<IOException> failure = new AtomicReference<>();
      // The workers take their chunks from the planner themselves: no thread hands out work, so
      // none is woken per chunk (each wake-up across CPUs leaves a core idle for tens of
      // microseconds on this VM).
      Runnable worker =
          () -> {
            try {
              for (Planner.Chunk c; failure.get() == null && (c = planner.next()) != null; ) {
                buffersLeft.acquireUninterruptibly();
                ByteBuffer polled = buffers.poll();
                ByteBuffer buf =
                    polled != null
                        ? polled
                        : ByteBuffer.allocateDirect(CHUNK + 4096).alignedSlice(4096);
                Runnable release =
                    () -> {
                      buffers.add(buf);
                      buffersLeft.release();
                    };
                boolean handedOver = false;
                try {
                  chain.read(buf.clear().limit(c.length()), c.start());
                  int[] runs = new int[2 * (CHUNK / ZERO_BLOCK / 2 + 1)];
                  int count = nonZeroRuns(buf.flip(), runs);
                  handedOver = true;
                  writer.submit(new ChunkWriter.Chunk(buf, c.start(), runs, count, release));
                  progress.accept(done.addAndGet(c.length()));
                } finally {
                  if (!handedOver) {
                    release.run();
                  }
                }
              }
            } catch (IOException | RuntimeException ex) {
              failure.compareAndSet(null, ex instanceof IOException io ? io : new IOException(ex));
            }
          };
      ExecutorService pool = Executors.newFixedThreadPool(threads, Converter::daemon);
      for (int i = 0; i < threads; i++) {
        pool.execute(worker);
      }
      pool.shutdown();
      try {
        if (!pool.awaitTermination(365, TimeUnit.DAYS)) {
          throw new IOException("convert workers did not finish");
        }
      } catch (InterruptedException ie) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException("interrupted");
      }
      if (failure.get() != null) {
        throw failure.get();
      }
      if (writer.failure() != null) {
        throw writer.failure();
      }
    }
  }

  /**
   * Hands out the chunks to convert, in guest order: data ranges by block status, neighbouring
   * extents (a compressed image has one per cluster) joined into chunks that end at {@link
   * #CHUNK}-aligned guest offsets or where the data ends. Ranges that are not data are skipped.
   * Thread-safe: one worker at a time plans (block status comes from cached L2 tables).
   */
  static final class Planner {
    /** A guest range to convert; {@code length} bytes, at most {@link #CHUNK}. */
    record Chunk(long start, int length) {}

    private final BackingChain chain;
    private final long size;
    private final LongConsumer skipped;
    private long pos;
    private long dataEnd;

    /**
     * @param skipped told the bytes of each skipped range (no data there)
     */
    Planner(BackingChain chain, LongConsumer skipped) {
      this.chain = chain;
      this.size = chain.size();
      this.skipped = skipped;
    }

    /**
     * The next chunk, or null when the whole disk is planned.
     *
     * @throws IOException if block status fails
     */
    synchronized Chunk next() throws IOException {
      long start = -1;
      while (pos < size) {
        if (pos >= dataEnd) {
          ChainExtent e = chain.chainStatus(pos, size - pos);
          if (!e.data()) {
            if (start >= 0) {
              break; // the chunk ends where the data does; the next call skips the rest
            }
            skipped.accept(e.length());
            pos = e.end();
            continue;
          }
          dataEnd = e.end();
        }
        if (start < 0) {
          start = pos;
        }
        long limit = (start / CHUNK + 1) * CHUNK;
        pos = Math.min(dataEnd, limit);
        if (pos == limit) {
          break;
        }
      }
      return start < 0 ? null : new Chunk(start, (int) (pos - start));
    }
  }

  /**
   * Finds the runs of {@code buf} (position 0 to limit) that are not all zeros, in blocks of {@link
   * #ZERO_BLOCK} bytes, neighbours joined.
   *
   * @param runs receives the runs as pairs of start and end positions; room for {@code limit /
   *     ZERO_BLOCK / 2 + 1} pairs
   * @return the number of runs
   */
  static int nonZeroRuns(ByteBuffer buf, int[] runs) {
    int n = buf.limit();
    int count = 0;
    int runStart = -1;
    for (int i = 0; i < n; i += ZERO_BLOCK) {
      int end = Math.min(n, i + ZERO_BLOCK);
      boolean zero = isZero(buf, i, end);
      if (!zero && runStart < 0) {
        runStart = i;
      } else if (zero && runStart >= 0) {
        runs[2 * count] = runStart;
        runs[2 * count++ + 1] = i;
        runStart = -1;
      }
    }
    if (runStart >= 0) {
      runs[2 * count] = runStart;
      runs[2 * count++ + 1] = n;
    }
    return count;
  }

  /** Whether {@code b[from, to)} is all zeros ({@code mismatch} compares 8 bytes at a time). */
  private static boolean isZero(ByteBuffer b, int from, int to) {
    return b.slice(from, to - from).mismatch(ZEROS.slice(0, to - from)) < 0;
  }

  private static Thread daemon(Runnable r) {
    Thread t = new Thread(r, "jqcowfs-convert");
    t.setDaemon(true);
    return t;
  }
}
