package org.jqcowfs.convert;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.LongConsumer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.image.DamagedRangeException;
import org.jqcowfs.image.Image;
import org.jqcowfs.storage.Storage;

/**
 * Writes a backing chain's virtual disk to a raw file, the job of {@code qemu-img convert -O raw
 * -W}: block status skips ranges that are not data, {@code threads} workers read data in chunks and
 * write them out of order ({@link #writeRuns}), and 4 KiB blocks of zeros inside data are left as
 * holes ({@code -S 4k}). Direct memory: one chunk buffer ({@link #CHUNK} bytes) per worker, two for
 * workers that decompress.
 */
public final class Converter {
  /** Bytes per work item. */
  static final int CHUNK = 1 << 20;

  /** Zero-detection granularity in bytes, as qemu-img's default {@code -S 4k}. */
  static final int ZERO_BLOCK = 4096;

  /** One block of zeros to compare with (read-only use, shared by the workers). */
  private static final ByteBuffer ZEROS = ByteBuffer.allocateDirect(ZERO_BLOCK);

  /** Chunk buffers a worker may fill before it waits for {@link #writeLock}. */
  private static final int SLOTS = 2;

  /**
   * Most workers, whatever is asked: twice the CPUs. More only take turns on the CPUs, and a chunk
   * then waits to be written until other workers' reads have pushed it out of the CPU's cache.
   * Reads of data that is not cached still overlap within a chunk (a batch of reads); the figures
   * are in docs/decisions/convert-writes.md.
   */
  public static final int MAX_THREADS = 2 * Runtime.getRuntime().availableProcessors();

  /**
   * Most workers, and the default, for a chain with a layer that is not a local file (a URL): its
   * reads wait on round trips, not on the CPUs, and each worker keeps one chunk in flight.
   */
  public static final int MAX_REMOTE_THREADS = 16;

  private final BackingChain chain;
  private final int threads;

  /** Told each damaged range written as zeros; null: a damaged range fails the convert. */
  private final BackingChain.DamageHandler salvage;

  /** Taken by workers writing decompressed chunks (see {@link Worker}). */
  private final ReentrantLock writeLock = new ReentrantLock();

  /**
   * @param chain the source
   * @param threads parallel readers, {@code >= 1}; at most {@link #MAX_THREADS} are started ({@link
   *     #MAX_REMOTE_THREADS} for a chain with a remote layer, {@link #remote})
   */
  public Converter(BackingChain chain, int threads) {
    this(chain, threads, null);
  }

  /**
   * A converter that salvages (qemu-img convert {@code --salvage}): a damaged range ({@link
   * DamagedRangeException}: a bad L1/L2 entry, a compressed cluster that does not decompress) is
   * left as zeros and handed to {@code salvage}, from any worker thread, and the convert goes on.
   *
   * @param salvage told each damaged range (null: the first one fails the convert)
   */
  public Converter(BackingChain chain, int threads, BackingChain.DamageHandler salvage) {
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be >= 1: " + threads);
    }
    this.chain = chain;
    this.threads = Math.min(threads, remote(chain) ? MAX_REMOTE_THREADS : MAX_THREADS);
    this.salvage = salvage;
  }

  /** Whether a layer of {@code chain} is not a local file (its reads are round trips). */
  public static boolean remote(BackingChain chain) {
    return chain.layers().stream().anyMatch(l -> l.location().localPath().isEmpty());
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
      convert(new RawTarget(raf.getChannel()), progress);
    }
  }

  /**
   * Writes the virtual disk to {@code target}; with a target that has a backing file ({@link
   * ConvertTarget#backingBytes}), only what the source's top layer holds (data, and zeros where it
   * decides zeros: qemu-img convert {@code -B}). The caller flushes and closes the target.
   *
   * @param progress told the guest bytes done so far, from any thread
   * @throws IOException the first read or write error
   */
  public void convert(ConvertTarget target, LongConsumer progress) throws IOException {
    AtomicLong done = new AtomicLong();
    ChunkPlanner planner =
        new ChunkPlanner(
            chain,
            skipped -> progress.accept(done.addAndGet(skipped)),
            salvage,
            target.alignment(),
            target.backingBytes());
    AtomicReference<IOException> failure = new AtomicReference<>();
    // The workers take their chunks from the planner themselves: no thread hands out work, so
    // none is woken per chunk (each wake-up across CPUs leaves a core idle for tens of
    // microseconds on this VM). Each reads into a buffer of its own and writes it out itself
    // (see Worker).
    Runnable worker =
        () -> {
          try {
            new Worker(target, planner.chunkBytes, done, progress).run(planner, failure);
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
  }

  /**
   * One worker's loop: takes a chunk, reads it into a buffer of its own, finds its non-zero runs
   * and writes them ({@link #writeRuns}).
   *
   * <p>A chunk that was read as a copy (uncompressed data) is written at once, from the buffer that
   * is still in this core's cache; if another worker is writing, the kernel's inode lock makes this
   * one spin until it is done, which costs little, since writes are then the bottleneck. A chunk
   * that had to be decompressed goes through {@link #writeLock} instead: if another worker holds
   * it, this one reads its next chunk into a second buffer rather than spin, and waits (asleep)
   * only when both buffers are full. Figures: docs/decisions/convert-writes.md.
   */
  private final class Worker {
    private final ConvertTarget target;
    private final int chunkBytes;
    private final AtomicLong done;
    private final LongConsumer progress;
    private final ArrayDeque<Slot> free = new ArrayDeque<>();
    private final ArrayDeque<Slot> filled = new ArrayDeque<>();

    Worker(ConvertTarget target, int chunkBytes, AtomicLong done, LongConsumer progress) {
      this.target = target;
      this.chunkBytes = chunkBytes;
      this.done = done;
      this.progress = progress;
    }

    void run(ChunkPlanner planner, AtomicReference<IOException> failure) throws IOException {
      for (ChunkPlanner.Chunk c; failure.get() == null && (c = planner.next()) != null; ) {
        if (c.zero()) {
          target.writeZeroes(c.start(), c.length());
          progress.accept(done.addAndGet(c.length()));
          continue;
        }
        // made only when none is free, and filled holds fewer than SLOTS here: at most SLOTS made
        Slot s = free.isEmpty() ? new Slot(chunkBytes, target.zeroBlock()) : free.pop();
        s.chunk = c;
        read(s.buf.clear().limit((int) c.length()), c.start());
        s.count = nonZeroRuns(s.buf.flip(), s.runs, target.zeroBlock());
        filled.add(s);
        if (!c.compressed() || !target.serialWrites()) {
          writeFilled();
        } else if (writeLock.tryLock()) {
          writeFilledAndUnlock();
        } else if (filled.size() == SLOTS) {
          writeLock.lock();
          writeFilledAndUnlock();
        }
      }
      writeFilled();
    }

    private void writeFilledAndUnlock() throws IOException {
      try {
        writeFilled();
      } finally {
        writeLock.unlock();
      }
    }

    private void writeFilled() throws IOException {
      for (Slot s; (s = filled.poll()) != null; ) {
        target.writeData(s.buf, s.chunk.start(), s.runs, s.count);
        free.push(s);
        progress.accept(done.addAndGet(s.chunk.length()));
      }
    }
  }

  /**
   * Reads {@code dst.remaining()} guest bytes at {@code start}; when salvaging, a damaged range in
   * them is zeros (and reported) and the bytes around it are read.
   */
  private void read(ByteBuffer dst, long start) throws IOException {
    try {
      chain.read(dst.duplicate(), start);
    } catch (DamagedRangeException d) {
      long end = start + dst.remaining();
      long from = Math.max(d.guestOffset(), start);
      long to = Math.min(d.end(), end);
      if (salvage == null || from >= to) {
        throw d;
      }
      salvage.damaged(d);
      int at = (int) (from - start);
      if (from > start) {
        read(dst.slice(dst.position(), at), start);
      }
      Image.fillZeros(dst.slice(dst.position() + at, (int) (to - from)));
      if (to < end) {
        read(dst.slice(dst.position() + (int) (to - start), (int) (end - to)), to);
      }
    }
    dst.position(dst.limit());
  }

  /** A chunk buffer (direct) and the non-zero runs read into it. */
  private static final class Slot {
    final ByteBuffer buf;
    final int[] runs;
    ChunkPlanner.Chunk chunk;
    int count;

    Slot(int chunkBytes, int zeroBlock) {
      buf = Storage.alignedBuffer(chunkBytes);
      runs = new int[2 * (chunkBytes / zeroBlock / 2 + 1)];
    }
  }

  /**
   * Writes the non-zero runs of a chunk: {@code runs[2i]} to {@code runs[2i + 1]} (byte positions
   * in {@code buf}) for {@code i < count}, each at file offset {@code offset} + its start, with
   * positional writes. {@code buf}'s position and limit are left alone. Thread-safe.
   *
   * <p>A worker writes an uncompressed chunk as soon as it has read it, from its own buffer, and no
   * lock of ours orders those writes: the kernel does (a buffered write holds the inode lock,
   * {@code i_rwsem}, for its whole copy), and a writer queued there spins while the owner copies,
   * so the next write starts as soon as the last ends ({@link Worker} says when a lock of ours is
   * taken). The alternatives measured (one writer thread, every write behind our lock) are in
   * docs/decisions/convert-writes.md.
   *
   * @throws IOException if a write fails
   */
  static void writeRuns(FileChannel out, ByteBuffer buf, long offset, int[] runs, int count)
      throws IOException {
    for (int i = 0; i < count; i++) {
      int from = runs[2 * i];
      ByteBuffer src = buf.slice(from, runs[2 * i + 1] - from);
      long pos = offset + from;
      while (src.hasRemaining()) {
        pos += out.write(src, pos);
      }
    }
  }

  /** As {@link #nonZeroRuns(ByteBuffer, int[], int)} in {@link #ZERO_BLOCK} blocks. */
  static int nonZeroRuns(ByteBuffer buf, int[] runs) {
    return nonZeroRuns(buf, runs, ZERO_BLOCK);
  }

  /**
   * Finds the runs of {@code buf} (position 0 to limit) that are not all zeros, in blocks of {@code
   * block} bytes (a multiple of {@link #ZERO_BLOCK}), neighbours joined.
   *
   * @param runs receives the runs as pairs of start and end positions; room for {@code limit /
   *     block / 2 + 1} pairs
   * @return the number of runs
   */
  static int nonZeroRuns(ByteBuffer buf, int[] runs, int block) {
    int n = buf.limit();
    // One view of each per chunk, moved from block to block: a slice per block made 2 objects per
    // 4 KiB, 84 MiB of garbage in a 3 GB convert, and the heap pages it touched
    ByteBuffer view = buf.duplicate();
    ByteBuffer zeros = ZEROS.duplicate();
    int count = 0;
    int runStart = -1;
    for (int i = 0; i < n; i += block) {
      int end = Math.min(n, i + block);
      boolean zero = true;
      for (int j = i; zero && j < end; j += ZERO_BLOCK) {
        int e = Math.min(end, j + ZERO_BLOCK);
        zero = view.limit(e).position(j).mismatch(zeros.limit(e - j)) < 0;
      }
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

  private static Thread daemon(Runnable r) {
    Thread t = new Thread(r, "jqcowfs-convert");
    t.setDaemon(true);
    return t;
  }
}
