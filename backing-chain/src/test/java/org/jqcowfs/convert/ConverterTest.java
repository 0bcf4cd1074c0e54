package org.jqcowfs.convert;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.io.Posix;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link Converter}'s parts against QEMU: the planned chunks cover exactly the data {@code qemu-img
 * map} reports, the output equals {@code qemu-img convert -O raw} with exactly its non-zero 4 KiB
 * blocks allocated, and a failed write fails the conversion without losing track of any buffer.
 */
class ConverterTest {
  static final int MIB = 1 << 20;

  /**
   * A 24 MiB overlay over a 16 MiB backing file (shorter, so the overlay's tail reads zeros):
   * compressed clusters, zero clusters, data with all-zero 4 KiB blocks inside, and holes, at
   * offsets that do not line up with {@link Converter#CHUNK}.
   */
  private static Path chain(Path dir) throws IOException {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "base.qcow2", "16M");
    Qemu.io(
        dir,
        "base.qcow2",
        "write -P 0x11 0 3M",
        "write -z 1M 8k",
        "write -c -P 0x22 5M 256k",
        "write -P 0x33 7936k 384k",
        "write -P 0 9M 64k");
    Qemu.img(
        dir,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        "overlay.qcow2",
        "24M");
    Qemu.io(
        dir,
        "overlay.qcow2",
        "write -P 0x44 2M 1M",
        "write -z 5M 64k",
        "write -P 0x55 12M 20k",
        "write -P 0 12M 4k",
        "write -c -P 0x66 20M 1M",
        "write -P 0x77 23M 12k");
    return dir.resolve("overlay.qcow2");
  }

  @Test
  void plannedChunksCoverExactlyTheNonZeroDataOfQemuImgMapAndSayWhichAreCompressed(
      @TempDir Path dir) throws Exception {
    Path image = chain(dir);
    BitSet want = new BitSet();
    // Compressed data: qemu-img map (7.2) gives no host offset for it, as for nothing else that
    // has data in a qcow2 chain
    BitSet compressed = new BitSet();
    for (JsonNode e : new ObjectMapper().readTree(Qemu.mapJson(image))) {
      // data that reads as zero (a raw layer's holes: "data": true, "zero": true) is skipped
      if (e.get("data").asBoolean() && !e.get("zero").asBoolean()) {
        int from = (int) (e.get("start").asLong() / 512);
        int to = from + (int) (e.get("length").asLong() / 512);
        want.set(from, to);
        if (!e.has("offset")) {
          compressed.set(from, to);
        }
      }
    }
    assertTrue(compressed.cardinality() > 0, "the chain has compressed clusters");
    try (BackingChain chain = ChainOpener.open(image, ChainOptions.DEFAULT)) {
      AtomicLong skipped = new AtomicLong();
      ChunkPlanner planner = new ChunkPlanner(chain, skipped::addAndGet, null);
      BitSet got = new BitSet();
      long planned = 0;
      long previousEnd = 0;
      for (ChunkPlanner.Chunk c; (c = planner.next()) != null; ) {
        long end = c.start() + c.length();
        assertTrue(c.start() >= previousEnd, "chunk at " + c.start() + " overlaps or goes back");
        assertTrue(c.length() > 0 && c.length() <= Converter.CHUNK, "chunk " + c);
        assertEquals(
            c.start() / Converter.CHUNK,
            (end - 1) / Converter.CHUNK,
            "chunk " + c + " crosses a CHUNK boundary");
        got.set((int) (c.start() / 512), (int) (end / 512));
        assertEquals(
            compressed.get((int) (c.start() / 512), (int) (end / 512)).cardinality() > 0,
            c.compressed(),
            "chunk " + c + " is marked compressed exactly when it holds compressed data");
        planned += c.length();
        previousEnd = end;
      }
      assertEquals(want, got);
      assertEquals(chain.size(), planned + skipped.get(), "planned and skipped bytes");
    }
  }

  @Test
  void outputEqualsQemuImgWithExactlyItsNonZeroBlocksAllocated(@TempDir Path dir) throws Exception {
    Path image = chain(dir);
    Path reference = Qemu.convertRaw(image, dir.resolve("qemu.raw"), null);
    Path out = dir.resolve("ours.raw");
    try (BackingChain chain = ChainOpener.open(image, ChainOptions.DEFAULT)) {
      AtomicLong done = new AtomicLong();
      new Converter(chain, 3).convert(out, v -> done.accumulateAndGet(v, Math::max));
      assertEquals(chain.size(), done.get(), "progress at the end");
    }
    assertEquals(Qemu.sha256(reference), Qemu.sha256(out));
    byte[] bytes = Files.readAllBytes(reference);
    BitSet nonZero = new BitSet();
    for (int block = 0; block * 4096 < bytes.length; block++) {
      for (int i = block * 4096; i < (block + 1) * 4096; i++) {
        if (bytes[i] != 0) {
          nonZero.set(block);
          break;
        }
      }
    }
    assertEquals(nonZero, dataBlocks(out, bytes.length));
  }

  /** The 4 KiB blocks of {@code file} that SEEK_DATA / SEEK_HOLE report as data. */
  private static BitSet dataBlocks(Path file, long length) throws IOException {
    BitSet data = new BitSet();
    int fd = Posix.open(file.toString(), Posix.O_RDONLY | Posix.O_CLOEXEC);
    assertTrue(fd >= 0, "open " + file);
    try {
      long pos = 0;
      while (pos < length) {
        long start = Posix.lseek(fd, pos, Posix.SEEK_DATA);
        if (start < 0) {
          break; // ENXIO: no data after pos
        }
        long end = Posix.lseek(fd, start, Posix.SEEK_HOLE);
        data.set((int) (start / 4096), (int) ((end + 4095) / 4096));
        pos = end;
      }
    } finally {
      Posix.close(fd);
    }
    return data;
  }

  @Test
  void nonZeroRunsJoinNeighboursAndSkipZeroBlocks() {
    ByteBuffer buf = ByteBuffer.allocateDirect(10 * 4096 + 100);
    for (int block : new int[] {1, 2, 5, 8}) {
      buf.put(block * 4096 + 4095, (byte) 1);
    }
    buf.put(10 * 4096 + 99, (byte) 1); // the partial last block
    int[] runs = new int[2 * 8];
    int count = Converter.nonZeroRuns(buf.limit(buf.capacity()), runs);
    assertEquals(4, count);
    assertEquals(
        List.of(4096, 3 * 4096, 5 * 4096, 6 * 4096, 8 * 4096, 9 * 4096, 10 * 4096, 10 * 4096 + 100),
        toList(runs, 2 * count));
    buf.put(10 * 4096 + 99, (byte) 0);
    count = Converter.nonZeroRuns(buf, runs);
    assertEquals(3, count);
  }

  private static List<Integer> toList(int[] a, int n) {
    List<Integer> l = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      l.add(a[i]);
    }
    return l;
  }

  @Test
  void writeRunsFromManyThreadsWritesEachRunInPlace(@TempDir Path dir) throws Exception {
    int chunks = 400;
    int bytes = 8192;
    Path file = dir.resolve("out.raw");
    try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "rw")) {
      FileChannel channel = raf.getChannel();
      List<Thread> threads = new ArrayList<>();
      for (int t = 0; t < 8; t++) {
        int first = t;
        threads.add(
            new Thread(
                () -> {
                  ByteBuffer b = ByteBuffer.allocateDirect(bytes);
                  for (int c = first; c < chunks; c += 8) {
                    b.clear();
                    while (b.hasRemaining()) {
                      b.put((byte) (c + 1));
                    }
                    try {
                      // the first and last 100 bytes of the chunk, as two runs
                      Converter.writeRuns(
                          channel, b, (long) c * bytes, new int[] {0, 100, bytes - 100, bytes}, 2);
                    } catch (IOException e) {
                      throw new IllegalStateException(e);
                    }
                  }
                }));
      }
      threads.forEach(Thread::start);
      for (Thread t : threads) {
        t.join();
      }
    }
    byte[] got = Files.readAllBytes(file);
    assertEquals((long) chunks * bytes, got.length);
    for (int c = 0; c < chunks; c++) {
      int at = c * bytes;
      assertEquals((byte) (c + 1), got[at], "chunk " + c);
      assertEquals((byte) (c + 1), got[at + 99], "chunk " + c);
      assertEquals(0, got[at + 100], "chunk " + c + " between the runs");
      assertEquals(0, got[at + bytes - 101], "chunk " + c + " between the runs");
      assertEquals((byte) (c + 1), got[at + bytes - 100], "chunk " + c);
      assertEquals((byte) (c + 1), got[at + bytes - 1], "chunk " + c);
    }
  }

  @Test
  void aFailedWriteThrows(@TempDir Path dir) throws Exception {
    FileChannel closed = FileChannel.open(Files.createFile(dir.resolve("out.raw")));
    closed.close();
    ByteBuffer b = ByteBuffer.allocateDirect(4096);
    assertThrows(
        IOException.class, () -> Converter.writeRuns(closed, b, 0, new int[] {0, 4096}, 1));
    assertEquals(0, Files.size(dir.resolve("out.raw")));
  }
}
