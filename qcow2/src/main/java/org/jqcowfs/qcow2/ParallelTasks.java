package org.jqcowfs.qcow2;

import java.io.IOException;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * The parts of one read request, done by the calling thread together with helper threads from one
 * bounded, process-wide pool, as QEMU's qcow2 driver spreads a request over its aio task pool
 * ({@code qcow2_add_task}, at most {@code QCOW2_MAX_WORKERS} = 8 at a time). The caller takes parts
 * from the same counter as its helpers, so a busy pool never makes it wait for work it could do
 * itself; it returns once every part is done, and the first failure fails the request.
 */
final class ParallelTasks {
  /** Helper threads: QEMU's {@code QCOW2_MAX_WORKERS}, or one per core when there are more. */
  static final int POOL_THREADS = Math.max(8, Runtime.getRuntime().availableProcessors());

  /** Cores of the machine. */
  static final int CORES = Runtime.getRuntime().availableProcessors();

  /** Most helpers for CPU-bound parts (decompression): the other cores. */
  static final int CPU_HELPERS = Math.max(0, CORES - 1);

  /** Helpers for parts that wait on the disk (reads of separate host ranges). */
  static final int IO_HELPERS = POOL_THREADS - 1;

  private static final ThreadPoolExecutor POOL = pool();

  /** Threads running CPU-bound parts right now ({@link #runCpuBound}: callers and helpers). */
  private static final AtomicInteger CPU_BUSY = new AtomicInteger();

  /** One part of a request. */
  @FunctionalInterface
  interface Task {
    /**
     * @param index the part, {@code 0 <= index < n}
     */
    void run(int index) throws IOException;
  }

  private ParallelTasks() {}

  private static ThreadPoolExecutor pool() {
    AtomicInteger count = new AtomicInteger();
    ThreadPoolExecutor pool =
        new ThreadPoolExecutor(
            POOL_THREADS,
            POOL_THREADS,
            0,
            TimeUnit.SECONDS,
            new LinkedBlockingQueue<>(),
            r -> {
              Thread t = new Thread(r, "jqcowfs-reader-" + count.getAndIncrement());
              t.setDaemon(true);
              return t;
            });
    pool.prestartAllCoreThreads();
    return pool;
  }

  /**
   * Runs CPU-bound {@code task} (decompression) for every index in {@code [0, n)}, on this thread
   * and one helper for each core that no other CPU-bound part is using. Callers that are already
   * many (the workers of {@code jqcowfs convert}, several FUSE readers) get no helpers: a helper
   * would only take a core from another caller, and each hand-off wakes a thread (10,200 against
   * 5,500 context switches for a zstd conversion with 8 workers on 2 cores).
   *
   * @throws IOException the first failure of any part, as {@link #run}
   */
  static void runCpuBound(int n, Task task) throws IOException {
    int busy = CPU_BUSY.incrementAndGet();
    try {
      int helpers = Math.max(0, Math.min(CPU_HELPERS, CORES - busy));
      run(
          n,
          helpers,
          task,
          helper -> {
            CPU_BUSY.incrementAndGet();
            try {
              helper.run();
            } finally {
              CPU_BUSY.decrementAndGet();
            }
          });
    } finally {
      CPU_BUSY.decrementAndGet();
    }
  }

  /**
   * Runs {@code task} for every index in {@code [0, n)}, on this thread and at most {@code
   * maxHelpers} helpers.
   *
   * @throws IOException the first failure of any part (the other parts still end before this
   *     returns, so buffers they write stay theirs until then)
   */
  static void run(int n, int maxHelpers, Task task) throws IOException {
    run(n, maxHelpers, task, Runnable::run);
  }

  /** As {@link #run(int, int, Task)}; each helper's share runs through {@code onHelper}. */
  private static void run(int n, int maxHelpers, Task task, Consumer<Runnable> onHelper)
      throws IOException {
    if (n <= 1 || maxHelpers <= 0) {
      for (int i = 0; i < n; i++) {
        task.run(i);
      }
      return;
    }
    AtomicInteger next = new AtomicInteger();
    CountDownLatch done = new CountDownLatch(n);
    AtomicReference<Throwable> failure = new AtomicReference<>();
    Runnable worker =
        () -> {
          for (int i; (i = next.getAndIncrement()) < n; ) {
            try {
              if (failure.get() == null) {
                task.run(i);
              }
            } catch (IOException | RuntimeException | Error e) {
              failure.compareAndSet(null, e);
            } finally {
              done.countDown();
            }
          }
        };
    int helpers = Math.min(n - 1, maxHelpers);
    for (int h = 0; h < helpers; h++) {
      try {
        POOL.execute(() -> onHelper.accept(worker));
      } catch (RejectedExecutionException e) {
        break; // the caller does the rest
      }
    }
    worker.run();
    boolean interrupted = false;
    while (true) {
      try {
        done.await();
        break;
      } catch (InterruptedException e) {
        interrupted = true; // helpers end soon, and they write into the caller's buffers
      }
    }
    if (interrupted) {
      Thread.currentThread().interrupt();
    }
    Throwable t = failure.get();
    if (t instanceof IOException io) {
      throw io;
    } else if (t instanceof RuntimeException re) {
      throw re;
    } else if (t instanceof Error err) {
      throw err;
    }
  }
}
