package org.jqcowfs.qcow2;

import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.LongAdder;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Platform;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.In;
import jnr.ffi.annotations.Out;
import jnr.ffi.annotations.SaveError;
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
 * <p>Cold {@code dd bs=1M} of the 4 GiB fragmented bench image through a mount, output on tmpfs, 6
 * interleaved pairs: the daemon used a median 2.64 s of CPU (2.53-3.11) against 3.38 s (3.11-4.35)
 * with a thread per read ({@code -Djqcowfs.linuxAio=false}), less in every pair, and took 2.97 s
 * (2.81-3.43) against 3.45 s (3.08-5.08). A cached fragmented image converts in the same time
 * either way (1.45-1.87 s against 1.55-1.60 s). More depth (4 read-ahead threads, 6 windows, 2 MiB
 * windows) did not help: fio's 64 KiB random reads of the file, at any queue depth, reach 1.7 GB/s
 * here, and its 1 MiB sequential ones 2.0-2.5 GB/s.
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
   * No batches in this process: {@code -Djqcowfs.linuxAio=false}, a CPU without known numbers, or
   * io_setup failed for good (a kernel without AIO).
   */
  private static volatile boolean unavailable =
      NR == null || "false".equals(System.getProperty("jqcowfs.linuxAio"));

  /** Reads that completed in full through a batch, since the process started. */
  private static final LongAdder COMPLETED_READS = new LongAdder();

  private LinuxAio() {}

  /**
   * The AIO system calls through libc's {@code syscall}, a binding of their own, loaded at the
   * first batch: jnr-ffi generates a binding's stubs when it loads, and every start of the command
   * line would pay for these in {@link Posix}. Public: jnr-ffi implements it from a class loader of
   * its own.
   */
  public interface Syscalls {
    /** {@code syscall(number, a, ctx)}: {@code io_setup(nr_events, &ctx)}. */
    @SaveError
    long syscall(long number, long a, @In @Out long[] ctx);

    /** {@code syscall(number, a)}: {@code io_destroy(ctx)}. */
    @SaveError
    long syscall(long number, long a);

    /** {@code syscall(number, a, b, c)}: {@code io_submit(ctx, nr, iocbpp)}. */
    @SaveError
    long syscall(long number, long a, long b, long c);

    /** {@code syscall(number, a, b, c, d, e)}: {@code io_getevents(ctx, min, nr, events, tmo)}. */
    @SaveError
    long syscall(long number, long a, long b, long c, long d, long e);
  }

  /** The binding, loaded on first use. */
  private static final class Libc {
    static final Syscalls LIBC = LibraryLoader.create(Syscalls.class).load("c");

    static int errno() {
      return Runtime.getRuntime(LIBC).getLastError();
    }
  }

  /** Reads that completed in full through a batch so far (for tests and statistics). */
  static long completedReads() {
    return COMPLETED_READS.sum();
  }

  private static long[] numbers() {
    return switch (Platform.getNativePlatform().getCPU()) {
      case X86_64 -> new long[] {206, 207, 208, 209};
      case AARCH64 -> new long[] {0, 1, 4, 2};
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
        long at = (long) i * IOCB_BYTES;
        c.iocbs.setMemory(at, IOCB_BYTES, (byte) 0);
        c.iocbs.putLong(at, i); // aio_data: the read's index
        c.iocbs.putShort(at + 16, (short) IOCB_CMD_PREAD);
        c.iocbs.putInt(at + 20, fd);
        c.iocbs.putLong(at + 24, address(dsts[i]));
        c.iocbs.putLong(at + 32, dsts[i].remaining());
        c.iocbs.putLong(at + 40, positions[i]);
        c.pointers.putLong((long) i * Long.BYTES, c.iocbs.address() + at);
      }
      while (submitted < count) {
        long r =
            Libc.LIBC.syscall(
                NR[3],
                c.id,
                count - submitted,
                c.pointers.address() + (long) submitted * Long.BYTES);
        if (r <= 0) {
          int errno = Libc.errno();
          if (r < 0 && errno == Posix.EINTR) {
            continue;
          }
          LOG.debug("io_submit of {} reads failed: errno {}", count - submitted, errno);
          break; // the rest stay MIN_VALUE
        }
        submitted += (int) r;
      }
      while (completed < submitted) {
        long r = Libc.LIBC.syscall(NR[2], c.id, 1, submitted - completed, c.events.address(), 0L);
        if (r < 0) {
          int errno = Libc.errno();
          if (errno == Posix.EINTR) {
            continue;
          }
          LOG.warn("io_getevents failed: errno {}; Linux AIO turned off", errno);
          java.util.Arrays.fill(results, 0, count, Long.MIN_VALUE);
          return; // the finally waits for the reads still in flight
        }
        for (int k = 0; k < r; k++) {
          int index = (int) c.events.getLong((long) k * EVENT_BYTES);
          results[index] = c.events.getLong((long) k * EVENT_BYTES + 16);
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
        Libc.LIBC.syscall(NR[1], c.id);
      }
    }
  }

  /** The native address of {@code b}'s position (a direct buffer). */
  private static long address(ByteBuffer b) {
    return com.kenai.jffi.MemoryIO.getInstance().getDirectBufferAddress(b) + b.position();
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
    long[] id = new long[1];
    long r;
    try {
      r = Libc.LIBC.syscall(NR[0], MAX_BATCH, id);
    } catch (RuntimeException | LinkageError e) {
      LOG.debug("no libc syscall binding; Linux AIO turned off", e);
      unavailable = true;
      CONTEXTS.decrementAndGet();
      return null;
    }
    if (r != 0) {
      int errno = Libc.errno();
      CONTEXTS.decrementAndGet();
      if (errno != Posix.EAGAIN) {
        LOG.debug("io_setup failed: errno {}; Linux AIO turned off", errno);
        unavailable = true;
      }
      return null;
    }
    return new Context(id[0]);
  }

  /**
   * Native memory that the kernel reads and writes by address ({@link Posix#allocate} may give Java
   * heap memory, which jnr-ffi copies around a call), kept as long as the context.
   */
  private static Pointer nativeMemory(int bytes) {
    return jnr.ffi.Memory.allocateDirect(Runtime.getRuntime(Libc.LIBC), bytes, true);
  }

  /** One AIO context (never destroyed: the process's contexts end with it) and its memory. */
  private static final class Context {
    final long id;
    final Pointer iocbs = nativeMemory(MAX_BATCH * IOCB_BYTES);
    final Pointer pointers = nativeMemory(MAX_BATCH * Long.BYTES);
    final Pointer events = nativeMemory(MAX_BATCH * EVENT_BYTES);

    Context(long id) {
      this.id = id;
    }
  }
}
