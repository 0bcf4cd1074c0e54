package org.jqcowfs.readahead;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link ReadAheadStream} against {@code qemu-img convert -O raw}: sequential reads of every size
 * and alignment are served from its windows and equal QEMU's bytes, jumps and random reads are
 * right too, and a cluster that cannot be read fails only the request that covers it.
 */
class ReadAheadStreamTest {
  static final int MIB = 1 << 20;

  /**
   * 12 MiB, deflate-compressed, 64 KiB clusters: random bytes of 4 bits (so that every cluster
   * compresses), a zero run and a zeroed range.
   */
  private static Path image(Path dir) throws IOException {
    byte[] data = new byte[12 * MIB];
    Random random = new Random(5);
    for (int i = 0; i < data.length; i++) {
      data[i] = (byte) random.nextInt(16);
    }
    Arrays.fill(data, 2 * MIB, 3 * MIB, (byte) 0);
    for (int i = 0; i < data.length; i += 4096) {
      data[i] = (byte) (i >> 12); // every 4 KiB block differs from its neighbours
    }
    Files.write(dir.resolve("src.raw"), data);
    Qemu.img(dir, "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "src.raw", "c.qcow2");
    Qemu.io(dir, "c.qcow2", "write -z 8M 1M");
    return dir.resolve("c.qcow2");
  }

  /** The image read ahead in, with the kernel readahead of a jqcowfs mount (8 MiB). */
  private static ReadAheadImage open(Path image) throws IOException {
    return new ReadAheadImage(ChainOpener.open(image, ChainOptions.DEFAULT), 8L << 20);
  }

  /** A reply's payload: the runs lent to it, given back on release (as the FUSE reply's). */
  static final class Payload implements Borrower {
    private final List<ByteBuffer> parts = new ArrayList<>();
    private final List<Runnable> giveBacks = new ArrayList<>();

    @Override
    public boolean lend(ByteBuffer bytes, Runnable giveBack) {
      if (parts.size() == 4) {
        return false;
      }
      parts.add(bytes);
      giveBacks.add(giveBack);
      return true;
    }

    List<ByteBuffer> lent() {
      return parts;
    }

    @Override
    public void release() {
      parts.clear();
      giveBacks.forEach(Runnable::run);
      giveBacks.clear();
    }
  }

  private static byte[] reference(Path image, Path dir) throws IOException {
    return Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("ref.raw"), null));
  }

  private static byte[] read(ReadAheadStream r, long offset, int length) throws IOException {
    ByteBuffer dst = ByteBuffer.allocateDirect(length);
    int n = r.read(dst, offset);
    assertEquals(n, dst.position());
    byte[] got = new byte[n];
    dst.flip().get(got);
    return got;
  }

  /** The reader has allocated at most {@link ReadAheadStream#MAX_BUFFERS} window buffers. */
  private static void assertBuffersBounded(ReadAheadStream r) {
    assertTrue(
        r.buffersAllocated() <= ReadAheadStream.MAX_BUFFERS,
        r.buffersAllocated() + " window buffers");
  }

  private static void assertRange(byte[] want, long offset, byte[] got) {
    int end = (int) Math.min(want.length, offset + got.length);
    assertArrayEquals(Arrays.copyOfRange(want, (int) offset, end), got, "at " + offset);
  }

  @Test
  void sequentialReadsOfEverySizeComeFromWindowsAndMatchQemu(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    byte[] want = reference(image, dir);
    try (ReadAheadImage fs = open(image)) {
      for (int size : new int[] {4096, 100_000, MIB, 3 * MIB + 12345}) {
        try (ReadAheadStream r = fs.openStream()) {
          long offset = 65536 + 17; // unaligned to windows, clusters and pages
          while (offset < want.length) {
            byte[] got = read(r, offset, size);
            assertRange(want, offset, got);
            offset += got.length;
          }
          assertEquals(0, read(r, want.length, 4096).length, "at the end");
          assertTrue(
              r.windowBytes() > want.length / 2,
              size + "-byte reads: served from windows " + r.windowBytes());
        }
      }
    }
  }

  /**
   * Two workers answering READs of 1 MiB in runs of 4 MiB, each jump dropping windows whose reads
   * still run: the bytes equal QEMU's, nothing hangs (a prefetch thread handing a buffer back must
   * not wait for the reader's lock), and the window buffers stay bounded.
   */
  @Test
  void outOfOrderReadsFromTwoWorkersStayBoundedAndMatchQemu(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    byte[] want = reference(image, dir);
    try (ReadAheadImage fs = open(image);
        ReadAheadStream r = fs.openStream()) {
      List<Long> order = new ArrayList<>();
      for (int pass = 0; pass < 40; pass++) { // runs of 4 MiB, each jump drops running windows
        for (long mib : new long[] {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7}) {
          order.add(mib * MIB);
        }
      }
      AtomicInteger next = new AtomicInteger();
      Runnable worker =
          () -> {
            for (int i; (i = next.getAndIncrement()) < order.size(); ) {
              long at = order.get(i);
              try {
                assertRange(want, at, read(r, at, MIB));
              } catch (IOException e) {
                throw new UncheckedIOException(e);
              }
            }
          };
      ExecutorService workers = Executors.newFixedThreadPool(2);
      try {
        List<Future<?>> done = List.of(workers.submit(worker), workers.submit(worker));
        for (Future<?> f : done) {
          f.get(60, TimeUnit.SECONDS);
        }
      } finally {
        workers.shutdownNow();
      }
      assertTrue(r.windowBytes() > 0, "no READ came from a window");
      assertBuffersBounded(r);
    }
  }

  /**
   * The kernel's readahead sends READs of 1 MiB several at a time, and two workers answer them at
   * the same moment, in either order: every READ after the first is served from a window, whichever
   * worker has it, so no range is decompressed twice (once by a worker, once in a window nobody
   * reads).
   */
  @Test
  void readsOnTwoWorkersAtOnceComeFromTheWindows(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    byte[] want = reference(image, dir);
    int pairs = want.length / MIB / 2 - 1; // READs 1 and 2, 3 and 4, ... at once; the last alone
    try (ReadAheadImage fs = open(image)) {
      for (int pass = 0; pass < 5; pass++) {
        try (ReadAheadStream r = fs.openStream()) {
          assertRange(want, 0, read(r, 0, MIB)); // the first READ comes alone
          CyclicBarrier together = new CyclicBarrier(2);
          ExecutorService workers = Executors.newFixedThreadPool(2);
          try {
            List<Future<?>> done = new ArrayList<>();
            for (int worker = 0; worker < 2; worker++) {
              int first = 1 + worker;
              done.add(
                  workers.submit(
                      () -> {
                        for (int pair = 0; pair < pairs; pair++) {
                          long at = (long) (first + 2 * pair) * MIB;
                          together.await(60, TimeUnit.SECONDS);
                          assertRange(want, at, read(r, at, MIB));
                        }
                        return null;
                      }));
            }
            for (Future<?> f : done) {
              f.get(60, TimeUnit.SECONDS);
            }
          } finally {
            workers.shutdownNow();
          }
          long last = (long) (2 * pairs + 1) * MIB;
          assertRange(want, last, read(r, last, want.length - (int) last));
          assertEquals(MIB, r.directBytes(), "bytes the READs read themselves, pass " + pass);
          assertEquals(want.length - MIB, r.windowBytes(), "bytes served from windows");
        }
      }
    }
  }

  /**
   * One READ of the kernel's readahead answered after the six that followed it (its worker was
   * descheduled while the other answered the rest) still finds its window, and the stream goes on
   * from the windows: only the first READ reads for itself. Before windows were kept until served,
   * the later READs dropped that window and the late READ, 6 MiB back, counted as a jump that
   * dropped all the others.
   */
  @Test
  void aReadAnsweredSixMibLateStillComesFromItsWindow(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    byte[] want = reference(image, dir);
    try (ReadAheadImage fs = open(image);
        ReadAheadStream r = fs.openStream()) {
      for (long mib : new long[] {0, 1, 2, 4, 5, 6, 7, 8, 9, 3, 10, 11}) {
        assertRange(want, mib * MIB, read(r, mib * MIB, MIB));
      }
      assertEquals(MIB, r.directBytes(), "bytes the READs read themselves");
      assertEquals(want.length - MIB, r.windowBytes(), "bytes served from windows");
      assertBuffersBounded(r);
    }
  }

  /**
   * READs that windows hold are lent to the reply from the windows, without a copy, as one run or
   * two (a 1 MiB READ not aligned to the windows, as the kernel's readahead sends them after cp
   * starts an extent); a lent window keeps its bytes while later READs move the stream on and drop
   * it, and its buffer is reused only once the reply has released it.
   */
  @Test
  void readsAreLentFromTheirWindowsAndKeptUntilReleased(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    byte[] want = reference(image, dir);
    for (long start : new long[] {0, 65536}) {
      try (ReadAheadImage fs = open(image);
          ReadAheadStream r = fs.openStream()) {
        ByteBuffer dst = ByteBuffer.allocateDirect(MIB);
        Payload held = new Payload();
        Payload payload = new Payload();
        long heldAt = start + 2 * MIB; // this READ's reply is kept to the end
        long lentWant = 0;
        for (long offset = start; offset < want.length; offset += MIB) {
          Payload p = offset == heldAt ? held : payload;
          int n = r.read(dst.clear(), offset, p);
          assertEquals(Math.min(MIB, want.length - offset), n);
          if (offset == start || (start != 0 && offset == start + MIB)) {
            // no window yet: the first READ (from 0) starts the stream; from elsewhere it is a
            // jump, and the second starts it
            assertTrue(p.lent().isEmpty(), "READ at " + offset + " lent");
            assertRange(want, offset, bytes(dst.flip()));
            continue;
          }
          assertEquals(0, dst.position(), "a lent READ leaves the reply buffer alone");
          assertEquals(start == 0 || offset + n == want.length ? 1 : 2, p.lent().size());
          assertRange(want, offset, bytes(p.lent()));
          lentWant += n;
          if (p == payload) {
            payload.release();
            assertTrue(payload.lent().isEmpty());
          }
        }
        assertRange(want, heldAt, bytes(held.lent())); // its windows were dropped long ago
        held.release();
        assertEquals(lentWant, r.lentBytes());
        assertBuffersBounded(r);
        for (long offset = 0; offset < want.length; offset += MIB) { // buffers reused, bytes right
          int n = r.read(dst.clear(), offset, payload);
          assertRange(
              want, offset, payload.lent().isEmpty() ? bytes(dst.flip()) : bytes(payload.lent()));
          assertEquals(n, want.length - offset < MIB ? want.length - offset : MIB);
          payload.release();
        }
      }
    }
  }

  /**
   * A reader that reads the first quarter of every MiB runs sequentially but never reads all of a
   * window. The windows it has passed are kept for late READs only while buffers are spare: once
   * all {@link ReadAheadStream#MAX_BUFFERS} are in use they give theirs back, and every READ after
   * the first still comes from a window.
   */
  @Test
  void aReaderThatSkipsPartOfEachWindowKeepsGettingWindows(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    byte[] want = reference(image, dir);
    int quarter = MIB / 4;
    try (ReadAheadImage fs = open(image);
        ReadAheadStream r = fs.openStream()) {
      for (long offset = 0; offset < want.length; offset += MIB) {
        assertRange(want, offset, read(r, offset, quarter));
      }
      assertEquals(quarter, r.directBytes(), "bytes the READs read themselves");
      assertEquals(want.length / 4 - quarter, r.windowBytes(), "bytes served from windows");
      assertBuffersBounded(r);
    }
  }

  /**
   * A READ that cannot be lent copies from its window; when that window is a view of the page cache
   * and the image file shrank under it, the copy faults. The READ then fails with an IOException
   * naming the image (EIO for that request), not with the JDK's InternalError.
   */
  @Test
  void aWindowWhoseImageShrankUnderItsMappingFailsWithAnIoError(@TempDir Path dir)
      throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "p.qcow2", "12M");
    Qemu.io(dir, "p.qcow2", "write -q -P 0x5a 0 12M");
    Path image = dir.resolve("p.qcow2");
    byte[] want = reference(image, dir);
    Files.readAllBytes(image); // in the page cache
    try (ReadAheadImage fs = open(image);
        ReadAheadStream r = fs.openStream()) {
      assertRange(want, 0, read(r, 0, MIB));
      assertRange(want, MIB, read(r, MIB, MIB));
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (r.mappedBytes() < 4 * MIB && System.nanoTime() < deadline) {
        Thread.sleep(10); // windows 1 to 4 mapped (1 is served and unmapped by now)
      }
      assertTrue(r.mappedBytes() >= 4 * MIB, r.mappedBytes() + " bytes of windows mapped");
      try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
        ch.truncate(MIB);
      }
      IOException e = assertThrows(IOException.class, () -> read(r, 2 * MIB, MIB));
      assertTrue(e.getMessage().contains(image.toString()), e.getMessage());
    }
  }

  /**
   * An uncompressed image the page cache holds: the windows are views of the cache ({@link
   * org.jqcowfs.io.CachedView}), lent to the replies with QEMU's bytes, at most {@link
   * ReadAheadStream#MAX_BUFFERS} mapped at a time, and unmapped once the reader is closed.
   */
  @Test
  void cachedRawWindowsAreViewsOfThePageCacheAndUnmappedAfterUse(@TempDir Path dir)
      throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "p.qcow2", "12M");
    Qemu.io(dir, "p.qcow2", "write -q -P 0x5a 0 5M", "write -q -P 0xa5 5M 7M");
    Path image = dir.resolve("p.qcow2");
    byte[] want = reference(image, dir);
    Files.readAllBytes(image); // in the page cache
    try (ReadAheadImage fs = open(image)) {
      Payload payload = new Payload();
      ByteBuffer dst = ByteBuffer.allocateDirect(MIB);
      try (ReadAheadStream r = fs.openStream()) {
        for (long offset = 0; offset < want.length; offset += MIB) {
          int n = r.read(dst.clear(), offset, payload);
          assertEquals(MIB, n);
          assertRange(
              want, offset, payload.lent().isEmpty() ? bytes(dst.flip()) : bytes(payload.lent()));
          assertTrue(mappings(image) <= ReadAheadStream.MAX_BUFFERS, mappings(image) + " maps");
          payload.release();
        }
        assertTrue(r.mappedBytes() >= 8 * MIB, r.mappedBytes() + " bytes of windows mapped");
        assertTrue(r.lentBytes() >= 8 * MIB, r.lentBytes() + " bytes lent");
      }
      // Closed: every window is dropped; one whose read still ran unmaps when it ends.
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
      while (mappings(image) > 0 && System.nanoTime() < deadline) {
        Thread.sleep(10);
      }
      assertEquals(0, mappings(image), "mappings of the image left after close");
    }
  }

  /** The mappings of {@code file} in this process ({@code /proc/self/maps}). */
  private static long mappings(Path file) throws IOException {
    return Files.readAllLines(Path.of("/proc/self/maps")).stream()
        .filter(line -> line.endsWith(" " + file))
        .count();
  }

  private static byte[] bytes(ByteBuffer b) {
    return bytes(List.of(b));
  }

  private static byte[] bytes(List<ByteBuffer> parts) {
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    for (ByteBuffer b : parts) {
      byte[] got = new byte[b.remaining()];
      b.duplicate().get(got);
      out.writeBytes(got);
    }
    return out.toByteArray();
  }

  @Test
  void jumpsAndRandomReadsMatchQemu(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    byte[] want = reference(image, dir);
    try (ReadAheadImage fs = open(image)) {
      Random random = new Random(9);
      try (ReadAheadStream r = fs.openStream()) {
        for (int i = 0; i < 300; i++) {
          long offset = random.nextInt(want.length);
          int length = 1 + random.nextInt(2 * MIB);
          assertRange(want, offset, read(r, offset, length));
        }
        assertEquals(0, r.windowBytes(), "random reads start no window");
        assertTrue(r.directBytes() > 0);
        // a sequential run, then a jump back into it and a jump ahead, then on sequentially
        for (long offset = 0; offset < 6 * MIB; offset += MIB) {
          assertRange(want, offset, read(r, offset, MIB));
        }
        assertRange(want, 3 * MIB + 5, read(r, 3 * MIB + 5, MIB));
        assertRange(want, 10 * MIB, read(r, 10 * MIB, MIB));
        assertRange(want, 11 * MIB, read(r, 11 * MIB, MIB));
        assertTrue(r.windowBytes() > 0);
      }
      ReadAheadStream closed = fs.openStream();
      closed.close();
      assertRange(want, 0, read(closed, 0, MIB));
      assertRange(want, MIB, read(closed, MIB, MIB));
      assertEquals(0, closed.windowBytes(), "a closed reader reads directly");
    }
  }

  @Test
  void aCorruptClusterFailsOnlyTheReadThatCoversIt(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    byte[] want = reference(image, dir);
    long bad = 5L * MIB + 3 * 65536; // guest offset of the corrupted cluster
    corruptCompressedCluster(image, bad);
    try (ReadAheadImage fs = open(image);
        ReadAheadStream r = fs.openStream()) {
      int failed = 0;
      for (long offset = 0; offset < want.length; offset += MIB) {
        if (offset <= bad && bad < offset + MIB) {
          long at = offset;
          assertThrows(IOException.class, () -> read(r, at, MIB), "the request over " + bad);
          failed++;
        } else {
          assertRange(want, offset, read(r, offset, MIB));
        }
      }
      assertEquals(1, failed);
      assertTrue(r.windowBytes() >= 8L * MIB, "the other requests came from windows");
    }
  }

  /**
   * Overwrites the start of the deflate stream of the compressed cluster at guest offset {@code
   * guest} with 0xff bytes (an invalid block type). 64 KiB clusters: the compressed cluster
   * descriptor's host offset is bits 0-53 (qcow2 spec, "Compressed Clusters Descriptor").
   */
  private static void corruptCompressedCluster(Path image, long guest) throws IOException {
    try (FileChannel ch =
        FileChannel.open(image, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      ByteBuffer header = ByteBuffer.allocate(48);
      ch.read(header, 0);
      assertEquals(16, header.getInt(20), "cluster_bits");
      long l1 = header.getLong(40);
      long l2 = readLong(ch, l1) & 0x00fffffffffffe00L;
      long entry = readLong(ch, l2 + 8 * (guest >> 16));
      assertTrue(
          entry >>> 62 == 1,
          "compressed cluster at "
              + guest
              + ": L1 "
              + l1
              + " L2 "
              + l2
              + " entry "
              + Long.toHexString(entry));
      long host = entry & ((1L << 54) - 1);
      byte[] junk = new byte[64];
      Arrays.fill(junk, (byte) 0xff);
      ch.write(ByteBuffer.wrap(junk), host);
    }
  }

  private static long readLong(FileChannel ch, long at) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(8);
    ch.read(b, at);
    return b.getLong(0);
  }
}
