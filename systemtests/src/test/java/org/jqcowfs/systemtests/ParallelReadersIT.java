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
 * 8 readers at once for 30 s over random ranges of a mounted chain with compressed layers, with
 * O_DIRECT so that every read reaches the daemon: no error, every byte equal to {@code qemu-img
 * convert}.
 */
class ParallelReadersIT {
  static final int READERS = 8;
  static final long SECONDS = 30;

  @Test
  void eightReadersThirtySeconds(@TempDir Path dir) throws Exception {
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
      Path flat = m.file(org.jqcowfs.fuse.FlatFileSystem.rawName(c.image()));
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
    }
    System.out.printf(
        "%d readers, %d s: %d reads, %d MiB, all equal%n",
        READERS, SECONDS, reads.get(), bytes.get() >> 20);
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
