package org.jqcowfs.io;

import com.kenai.jffi.MemoryIO;
import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Batches of positional reads of an {@code O_DIRECT} descriptor through Linux native AIO ({@code
 * io_setup(2)}, {@code io_submit(2)}, {@code io_getevents(2)}): the calling thread submits every
 * read of a batch with one system call and waits once for all of them, where a pool of threads
 * would take one hand-off and one wake-up per read. A fragmented image's 1 MiB read is 16 separate
 * 64 KiB host ranges; QEMU's {@code aio=native} does the same ({@code laio_co_submit}). The kernel
 * also plugs the batch's requests and tells the disk once. Thread-safe: each batch uses an AIO
 * context of its own from a small pool.
 *
 * <p>{@link HostFileOptions#linuxAio} off reads with a thread per read instead; the figures are in
 * docs/decisions/direct-reads-and-aio.md.
 */
final class LinuxAio {
  private static final Logger LOG = LoggerFactory.getLogger(LinuxAio.class);

  /** Most reads in one batch, and the events each AIO context holds. */
  static final int MAX_BATCH = 64;

  /** Most AIO contexts the process sets up (the system's limit is {@code fs.aio-max-nr} events). */
  static final int MAX_CONTEXTS = 64;

  /** {@code sizeof(struct iocb)} and {@code sizeof(struct io_event)}, in bytes. */
  private static final int IOCB_BYTES = 64;

  private static final int EVENT_BYTES = 32;

  /** {@code IOCB_CMD_PREAD}. */
  private static final int IOCB_CMD_PREAD = 0;

  /** System call numbers: io_setup, io_destroy, io_getevents, io_submit; null on other CPUs. */
  private static final long[] NR = numbers();

  private static final ConcurrentLinkedQueue<Context> IDLE = new ConcurrentLinkedQueue<>();
  private static final AtomicInteger CONTEXTS = new AtomicInteger();

  /**
   * No batches in this process: a CPU without known numbers, or io_setup failed for good (a kernel
   * without AIO).
   */
  private static volatile boolean unavailable = NR == null;

  /** Reads that completed in full through a batch, since the process started. */
  private static final LongAdder COMPLETED_READS = new LongAdder();

  private LinuxAio() {}

  private static final MemoryIO MEMORY = MemoryIO.getInstance();

  /** Reads that completed in full through a batch so far (for tests and statistics). */
  static long completedReads() {
    return COMPLETED_READS.sum();
  }

  private static long[] numbers() {
    return switch (System.getProperty("os.arch")) {
      case "amd64", "x86_64" -> new long[] {206, 207, 208, 209};
      case "aarch64" -> new long[] {0, 1, 4, 2};
      default -> null;
    };
  }

  /** Whether batches can be submitted in this process (as far as is known yet). */
  static boolean available() {
    return !unavailable;
  }

  /**
   * Reads {@code dsts[i].remaining()} bytes at file offset {@code positions[i]} of {@code fd} into
   * each {@code dsts[i]} for {@code i < count} (at most {@link #MAX_BATCH}), all submitted at once,
   * and returns when the kernel has completed every read it took. Buffer positions are left alone:
   * the caller moves those whose read completed in full.
   *
   * <p>The buffers must be direct, and offsets, lengths and addresses fit for {@code O_DIRECT}.
   *
   * @param results receives, for each read, the bytes read, a negative errno, or {@link
   *     Long#MIN_VALUE} for a read that was not submitted (AIO unavailable, no context free, or
   *     {@code io_submit} refused it): the caller reads those another way
   */
  static void read(int fd, ByteBuffer[] dsts, long[] positions, int count, long[] results) {
    if (count > MAX_BATCH) {
      throw new IllegalArgumentException("batch of " + count + " reads, most " + MAX_BATCH);
    }
    java.util.Arrays.fill(results, 0, count, Long.MIN_VALUE);
    Context c = take();
    if (c == null) {
      return;
    }
    int submitted = 0;
    int completed = 0;
    try {
      for (int i = 0; i < count; i++) {
        long iocb = c.iocbs + (long) i * IOCB_BYTES;
        MEMORY.setMemory(iocb, IOCB_BYTES, (byte) 0);
        MEMORY.putLong(iocb, i); // aio_data: the read's index
        MEMORY.putShort(iocb + 16, (short) IOCB_CMD_PREAD);
        MEMORY.putInt(iocb + 20, fd);
        MEMORY.putLong(iocb + 24, address(dsts[i]));
        MEMORY.putLong(iocb + 32, dsts[i].remaining());
        MEMORY.putLong(iocb + 40, positions[i]);
        MEMORY.putLong(c.pointers + (long) i * Long.BYTES, iocb);
      }
      while (submitted < count) {
        long r =
            Posix.syscall(
                NR[3], c.id, count - submitted, c.pointers + (long) submitted * Long.BYTES, 0, 0);
        if (r <= 0) {
          int errno = Posix.errno();
          if (r < 0 && errno == Posix.EINTR) {
            continue;
          }
          LOG.debug("io_submit of {} reads failed: errno {}", count - submitted, errno);
          break; // the rest stay MIN_VALUE
        }
        submitted += (int) r;
      }
      while (completed < submitted) {
        long r = Posix.syscall(NR[2], c.id, 1, submitted - completed, c.events, 0);
        if (r < 0) {
          int errno = Posix.errno();
          if (errno == Posix.EINTR) {
            continue;
          }
          LOG.warn("io_getevents failed: errno {}; Linux AIO turned off", errno);
          java.util.Arrays.fill(results, 0, count, Long.MIN_VALUE);
          return; // the finally waits for the reads still in flight
        }
        for (int k = 0; k < r; k++) {
          long event = c.events + (long) k * EVENT_BYTES;
          int index = (int) MEMORY.getLong(event);
          results[index] = MEMORY.getLong(event + 16);
          if (results[index] == dsts[index].remaining()) {
            COMPLETED_READS.increment();
          }
        }
        completed += (int) r;
      }
    } finally {
      if (completed == submitted) {
        IDLE.add(c);
      } else {
        // Reads still in flight (io_getevents failed, or an exception): io_destroy waits for them,
        // so that no buffer is written after this returns, and the context is not used again.
        unavailable = true;
        Posix.syscall(NR[1], c.id, 0, 0, 0, 0);
      }
    }
  }

  /** The native address of {@code b}'s position (a direct buffer). */
  private static long address(ByteBuffer b) {
    return MEMORY.getDirectBufferAddress(b) + b.position();
  }

  /** An idle context, a new one while there are fewer than {@link #MAX_CONTEXTS}, or null. */
  private static Context take() {
    Context c = IDLE.poll();
    if (c != null || unavailable) {
      return c;
    }
    if (CONTEXTS.incrementAndGet() > MAX_CONTEXTS) {
      CONTEXTS.decrementAndGet();
      return null;
    }
    long id;
    long r;
    try {
      id = nativeMemory(Long.BYTES); // aio_context_t, 0 before io_setup
      r = Posix.syscall(NR[0], MAX_BATCH, id, 0, 0, 0);
    } catch (RuntimeException | LinkageError e) {
      LOG.debug("no libc syscall binding; Linux AIO turned off", e);
      unavailable = true;
      CONTEXTS.decrementAndGet();
      return null;
    }
    long context = MEMORY.getLong(id);
    MEMORY.freeMemory(id);
    if (r != 0) {
      int errno = Posix.errno();
      CONTEXTS.decrementAndGet();
      if (errno != Posix.EAGAIN) {
        LOG.debug("io_setup failed: errno {}; Linux AIO turned off", errno);
        unavailable = true;
      }
      return null;
    }
    return new Context(context);
  }

  /** {@code bytes} bytes of native memory, zeroed, at an address the kernel reads and writes. */
  private static long nativeMemory(int bytes) {
    long address = MEMORY.allocateMemory(bytes, true);
    if (address == 0) {
      throw new OutOfMemoryError("no native memory for " + bytes + " bytes of an AIO context");
    }
    return address;
  }

  /**
   * One AIO context (never destroyed: the process's contexts end with it) and its native memory
   * (never freed, for the same reason).
   */
  private static final class Context {
    final long id;
    final long iocbs = nativeMemory(MAX_BATCH * IOCB_BYTES);
    final long pointers = nativeMemory(MAX_BATCH * Long.BYTES);
    final long events = nativeMemory(MAX_BATCH * EVENT_BYTES);

    Context(long id) {
      this.id = id;
    }
  }
}
