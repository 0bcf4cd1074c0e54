package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;

class ParallelTasksTest {
  @Test
  void everyPartRunsOnceAndHelpersTakePart() throws Exception {
    int n = 400;
    AtomicIntegerArray runs = new AtomicIntegerArray(n);
    Set<String> threads = ConcurrentHashMap.newKeySet();
    ParallelTasks.run(
        n,
        ParallelTasks.IO_HELPERS,
        i -> {
          runs.incrementAndGet(i);
          threads.add(Thread.currentThread().getName());
          sleepMillis(1);
        });
    for (int i = 0; i < n; i++) {
      assertEquals(1, runs.get(i), "part " + i);
    }
    assertTrue(threads.size() > 1, "only " + threads + " ran the parts");
  }

  @Test
  void withoutHelpersTheCallerRunsEveryPartInOrder() throws Exception {
    StringBuilder order = new StringBuilder();
    String caller = Thread.currentThread().getName();
    ParallelTasks.run(
        5,
        0,
        i -> {
          assertEquals(caller, Thread.currentThread().getName());
          order.append(i);
        });
    assertEquals("01234", order.toString());
  }

  @Test
  void theFirstFailureFailsTheRequestAfterEveryRunningPartHasEnded() {
    IOException boom = new IOException("part 37 failed");
    AtomicInteger running = new AtomicInteger();
    IOException thrown =
        assertThrows(
            IOException.class,
            () ->
                ParallelTasks.run(
                    200,
                    ParallelTasks.IO_HELPERS,
                    i -> {
                      running.incrementAndGet();
                      try {
                        sleepMillis(2);
                        if (i == 37) {
                          throw boom;
                        }
                      } finally {
                        running.decrementAndGet();
                      }
                    }));
    assertSame(boom, thrown);
    assertEquals(0, running.get(), "parts still running after the request failed");
  }

  @Test
  void aRuntimeExceptionIsRethrownAsItIs() {
    IllegalStateException bug = new IllegalStateException("bug");
    assertSame(
        bug,
        assertThrows(
            IllegalStateException.class,
            () ->
                ParallelTasks.run(
                    8,
                    ParallelTasks.CPU_HELPERS,
                    i -> {
                      if (i == 5) {
                        throw bug;
                      }
                    })));
  }

  @Test
  void cpuBoundPartsGetHelpersWhileCoresAreFree() throws Exception {
    assumeTrue(ParallelTasks.CORES >= 2, "one core: there is no helper to get");
    Set<String> threads = threadsRunningCpuBoundParts(2);
    assertTrue(threads.size() > 1, "only " + threads + " ran the parts");
  }

  @Test
  void cpuBoundPartsGetNoHelperWhileEveryCoreRunsOne() throws Exception {
    // One caller per core, each inside a CPU-bound part until released.
    CountDownLatch inside = new CountDownLatch(ParallelTasks.CORES);
    CountDownLatch release = new CountDownLatch(1);
    ExecutorService others = Executors.newFixedThreadPool(ParallelTasks.CORES);
    try {
      for (int c = 0; c < ParallelTasks.CORES; c++) {
        others.submit(
            () -> {
              ParallelTasks.runCpuBound(
                  1,
                  i -> {
                    inside.countDown();
                    try {
                      release.await();
                    } catch (InterruptedException e) {
                      Thread.currentThread().interrupt();
                    }
                  });
              return null;
            });
      }
      assertTrue(inside.await(10, TimeUnit.SECONDS), "the callers did not start");
      assertEquals(Set.of(Thread.currentThread().getName()), threadsRunningCpuBoundParts(1));
    } finally {
      release.countDown();
      others.shutdown();
      assertTrue(others.awaitTermination(10, TimeUnit.SECONDS));
    }
  }

  /** The threads that ran 40 CPU-bound parts of {@code ms} milliseconds each. */
  private static Set<String> threadsRunningCpuBoundParts(long ms) throws IOException {
    Set<String> threads = ConcurrentHashMap.newKeySet();
    ParallelTasks.runCpuBound(
        40,
        i -> {
          threads.add(Thread.currentThread().getName());
          sleepMillis(ms);
        });
    return threads;
  }

  private static void sleepMillis(long ms) {
    try {
      Thread.sleep(ms);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}
