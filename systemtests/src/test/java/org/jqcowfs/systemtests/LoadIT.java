package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.sun.nio.file.ExtendedOpenOption;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicLong;
import org.jqcowfs.qcow2.testing.ImageMatrix;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Load: 16 readers at once for 60 s over random ranges (4 KiB to 1 MiB) of a mounted chain with
 * compressed layers, with O_DIRECT so that every read reaches the daemon. No error, every byte
 * equal to {@code qemu-img convert}; the daemon's peak RSS stays under 300 MiB, and its threads and
 * open file descriptors are as many after the load as before it.
 */
class LoadIT {
  static final int READERS = 16;
  static final long SECONDS = 60;
  static final long MAX_RSS_KIB = 300 << 10;

  /**
   * A daemon's counts from /proc. Threads are jqcowfs's own: the JVM starts and ends compiler and
   * GC threads by itself ({@code UseDynamicNumberOfCompilerThreads}, {@code
   * UseDynamicNumberOfGCThreads}), which is not a leak.
   */
  record Counts(int threads, int fds, long rssKib, long peakRssKib) {
    static boolean jvmInternal(String name) {
      return name.startsWith("C1 CompilerThre")
          || name.startsWith("C2 CompilerThre")
          || name.startsWith("GC Thread")
          || name.startsWith("VM ");
    }

    static Counts of(long pid) throws java.io.IOException {
      Path proc = Path.of("/proc", Long.toString(pid));
      long rss = 0;
      long peak = 0;
      for (String line : Files.readAllLines(proc.resolve("status"))) {
        if (line.startsWith("VmRSS:")) {
          rss = Long.parseLong(line.replaceAll("\\D", ""));
        } else if (line.startsWith("VmHWM:")) {
          peak = Long.parseLong(line.replaceAll("\\D", ""));
        }
      }
      try (var t = Files.list(proc.resolve("task"));
          var f = Files.list(proc.resolve("fd"))) {
        int threads = 0;
        for (Path task : (Iterable<Path>) t::iterator) {
          if (!jvmInternal(Files.readString(task.resolve("comm")).strip())) {
            threads++;
          }
        }
        return new Counts(threads, (int) f.count(), rss, peak);
      }
    }
  }

  @Test
  void sixteenReadersSixtySeconds(@TempDir Path dir) throws Exception {
    ImageMatrix.Case c =
        ImageMatrix.all().stream()
            .filter(n -> n.name().equals("chain-raw-deflate-zstd-extl2"))
            .findFirst()
            .orElseThrow()
            .recipe()
            .build(dir);
    Path reference = Qemu.convertRaw(c.image(), dir.resolve("qemu.raw"), null);
    byte[] want = Files.readAllBytes(reference);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    AtomicLong reads = new AtomicLong();
    AtomicLong bytes = new AtomicLong();
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, c.image().toString())) {
      Path flat = m.file(org.jqcowfs.fuse.filesystem.FlatFileSystem.rawName(c.image()));
      long pid = m.process.pid();
      // Warm up (worker threads, thread-local buffers), then count.
      readUntil(flat, want, -1, System.nanoTime() + 2_000_000_000L, new AtomicLong(), bytes);
      Counts before = Counts.of(pid);
      long deadline = System.nanoTime() + SECONDS * 1_000_000_000L;
      ExecutorService pool = Executors.newFixedThreadPool(READERS);
      List<Future<?>> done = new ArrayList<>();
      for (int t = 0; t < READERS; t++) {
        int seed = t;
        done.add(
            pool.submit(
                () -> {
                  readUntil(flat, want, seed, deadline, reads, bytes);
                  return null;
                }));
      }
      for (Future<?> f : done) {
        f.get();
      }
      pool.shutdown();
      Counts after = Counts.of(pid);
      System.out.printf(
          "load: %d readers, %d s: %d reads, %d MiB, all equal; daemon threads %d -> %d,"
              + " fds %d -> %d, RSS %d -> %d MiB, peak RSS %d MiB%n",
          READERS,
          SECONDS,
          reads.get(),
          bytes.get() >> 20,
          before.threads(),
          after.threads(),
          before.fds(),
          after.fds(),
          before.rssKib() >> 10,
          after.rssKib() >> 10,
          after.peakRssKib() >> 10);
      assertEquals(before.threads(), after.threads(), "daemon threads before and after");
      assertEquals(before.fds(), after.fds(), "daemon file descriptors before and after");
      assertTrue(after.peakRssKib() < MAX_RSS_KIB, "peak RSS " + after.peakRssKib() + " KiB");
    }
    assertTrue(reads.get() > READERS * 100L, "too few reads: " + reads.get());
  }

  private static void readUntil(
      Path flat, byte[] want, int seed, long deadline, AtomicLong reads, AtomicLong bytes)
      throws Exception {
    Random r = new Random(seed);
    int pages = want.length / 4096;
    ByteBuffer buf = ByteBuffer.allocateDirect((1 << 20) + 4096).alignedSlice(4096);
    byte[] got = new byte[1 << 20];
    try (FileChannel ch =
        FileChannel.open(flat, StandardOpenOption.READ, ExtendedOpenOption.DIRECT)) {
      while (System.nanoTime() < deadline) {
        long off = (long) r.nextInt(pages) * 4096;
        int len = (1 + r.nextInt(256)) * 4096;
        len = (int) Math.min(len, want.length - off);
        buf.clear().limit(len);
        while (buf.hasRemaining()) {
          if (ch.read(buf, off + buf.position()) < 0) {
            break;
          }
        }
        assertEquals(len, buf.position(), "short read at " + off);
        buf.flip().get(got, 0, len);
        if (!java.util.Arrays.equals(got, 0, len, want, (int) off, (int) off + len)) {
          throw new AssertionError("bytes differ in [" + off + ", " + (off + len) + ")");
        }
        reads.incrementAndGet();
        bytes.addAndGet(len);
      }
    }
  }
}
