package org.jqcowfs.chain;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.raw.RawImage;
import org.jqcowfs.readahead.ReadAheadImage;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.MemoryStorage;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The {@link Image} contract, one suite for every implementation: {@link RawImage}, {@link
 * Qcow2Image}, {@link BackingChain} and the {@link ReadAheadImage} decorator, on local files and in
 * memory ({@link MemoryStorage}). Each is built by qemu-img and qemu-io, and its answers are
 * checked against {@code qemu-img convert -O raw} of the same file: size, whole and random reads,
 * reads from 8 threads at once, ranges outside the disk, and block status that tiles the disk with
 * extents whose zero ranges read as zeros. Opened writable, each takes writes, write-zeroes,
 * discards and flushes, and then reads, before and after it is opened again, and as {@code qemu-img
 * convert} reads it, as a raw file given the same operations.
 */
class ImageContractTest {
  /** The implementations under test and how each is opened from its file. */
  enum Kind {
    RAW,
    QCOW2,
    CHAIN,
    READ_AHEAD,
    /** The chain in memory ({@link MemoryStorage}): no capability of a local file. */
    MEMORY
  }

  record Subject(Image image, byte[] want) {}

  /** 12 MiB: data, zero clusters, unallocated ranges, an unaligned tail; read-only. */
  static Subject open(Kind kind, Path dir) throws Exception {
    return open(kind, dir, false);
  }

  /** As {@link #open(Kind, Path)}, writable (the chain's top layer) when {@code writable}. */
  static Subject open(Kind kind, Path dir, boolean writable) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "base.qcow2", "12M");
    Qemu.io(dir, "base.qcow2", "write -q -P 1 0 1M", "write -q -P 2 5M 64k", "write -q -z 6M 1M");
    Qemu.img(
        dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "12M");
    Qemu.io(dir, "top.qcow2", "write -q -P 3 512k 1M", "write -q -z 5M 4k", "write -q -P 4 11M 7k");
    Path file =
        switch (kind) {
          case RAW -> Qemu.convertRaw(dir.resolve("top.qcow2"), dir.resolve("disk.raw"), null);
          case QCOW2 -> dir.resolve("base.qcow2");
          case CHAIN, READ_AHEAD, MEMORY -> dir.resolve("top.qcow2");
        };
    byte[] want =
        Files.readAllBytes(
            kind == Kind.RAW ? file : Qemu.convertRaw(file, dir.resolve("want.raw"), null));
    return new Subject(reopen(kind, dir, writable), want);
  }

  /** The memory store of the MEMORY kind, per test directory. */
  private static final java.util.Map<Path, MemoryStorage.Store> STORES =
      new java.util.concurrent.ConcurrentHashMap<>();

  @AfterEach
  void forgetStores() {
    STORES.clear();
  }

  /** Opens the image {@link #open(Kind, Path, boolean)} made in {@code dir} (again). */
  static Image reopen(Kind kind, Path dir, boolean writable) throws Exception {
    HostFileOptions io = HostFileOptions.DEFAULT.withWritable(writable);
    ChainOptions chain = ChainOptions.DEFAULT.withHostIo(io);
    return switch (kind) {
      case RAW ->
          RawImage.open(FileLocation.of(dir.resolve("disk.raw")), PosixOpener.DEFAULT, writable);
      case QCOW2 ->
          Qcow2Image.open(dir.resolve("base.qcow2"), new Qcow2Options(-1, null, null, io));
      case CHAIN -> ChainOpener.open(dir.resolve("top.qcow2"), chain);
      case READ_AHEAD ->
          new ReadAheadImage(ChainOpener.open(dir.resolve("top.qcow2"), chain), 8L << 20);
      case MEMORY -> {
        MemoryStorage.Store store =
            STORES.computeIfAbsent(
                dir,
                d -> {
                  MemoryStorage.Store st = new MemoryStorage.Store();
                  for (String name : List.of("base.qcow2", "top.qcow2")) {
                    try {
                      st.put(name, Files.readAllBytes(d.resolve(name)));
                    } catch (java.io.IOException e) {
                      throw new java.io.UncheckedIOException(e);
                    }
                  }
                  return st;
                });
        yield ChainOpener.open(store.location("top.qcow2"), chain.withStorage(store));
      }
    };
  }

  /**
   * Writes the memory store's objects back to their files in {@code dir}, so that QEMU can read
   * what was written in memory; nothing for the other kinds.
   */
  static void storeToFiles(Kind kind, Path dir) throws Exception {
    MemoryStorage.Store store = STORES.remove(dir);
    if (kind == Kind.MEMORY) {
      for (String name : List.of("base.qcow2", "top.qcow2")) {
        Files.write(dir.resolve(name), store.get(name));
      }
    }
  }

  /** The file QEMU reads as the disk of {@code kind} in {@code dir}, and its format. */
  static List<String> qemuImage(Kind kind, Path dir) {
    return switch (kind) {
      case RAW -> List.of("raw", dir.resolve("disk.raw").toString());
      case QCOW2 -> List.of("qcow2", dir.resolve("base.qcow2").toString());
      case CHAIN, READ_AHEAD, MEMORY -> List.of("qcow2", dir.resolve("top.qcow2").toString());
    };
  }

  static byte[] read(Image image, long offset, int length) throws Exception {
    ByteBuffer b = ByteBuffer.allocate(length);
    image.read(b, offset);
    assertEquals(length, b.position(), "read fills the buffer");
    return b.array();
  }

  @ParameterizedTest
  @EnumSource(Kind.class)
  void sizeAndWholeRead(Kind kind, @TempDir Path dir) throws Exception {
    Subject s = open(kind, dir);
    try (Image image = s.image()) {
      assertEquals(s.want().length, image.size());
      assertArrayEquals(s.want(), read(image, 0, s.want().length));
    }
  }

  @ParameterizedTest
  @EnumSource(Kind.class)
  void sequentialReadsInUnalignedPieces(Kind kind, @TempDir Path dir) throws Exception {
    Subject s = open(kind, dir);
    try (Image image = s.image()) {
      int piece = 100_000 + 7;
      for (int off = 0; off < s.want().length; off += piece) {
        int len = Math.min(piece, s.want().length - off);
        assertArrayEquals(
            Arrays.copyOfRange(s.want(), off, off + len), read(image, off, len), "at " + off);
      }
    }
  }

  @ParameterizedTest
  @EnumSource(Kind.class)
  void randomReadsFromEightThreads(Kind kind, @TempDir Path dir) throws Exception {
    Subject s = open(kind, dir);
    ExecutorService pool = Executors.newFixedThreadPool(8);
    try (Image image = s.image()) {
      List<Future<?>> done = new ArrayList<>();
      for (int t = 0; t < 8; t++) {
        Random r = new Random(t);
        done.add(
            pool.submit(
                () -> {
                  for (int i = 0; i < 200; i++) {
                    int len = 1 + r.nextInt(200_000);
                    int off = r.nextInt(s.want().length - len + 1);
                    assertArrayEquals(
                        Arrays.copyOfRange(s.want(), off, off + len),
                        read(image, off, len),
                        "read of " + len + " at " + off);
                  }
                  return null;
                }));
      }
      for (Future<?> f : done) {
        f.get();
      }
    } finally {
      pool.shutdownNow();
    }
  }

  @ParameterizedTest
  @EnumSource(Kind.class)
  void rangesOutsideTheDiskAreRefused(Kind kind, @TempDir Path dir) throws Exception {
    Subject s = open(kind, dir);
    try (Image image = s.image()) {
      long size = image.size();
      assertThrows(IllegalArgumentException.class, () -> read(image, size - 10, 11));
      assertThrows(IllegalArgumentException.class, () -> read(image, -1, 1));
      assertThrows(IllegalArgumentException.class, () -> image.blockStatus(size, 1));
      assertEquals(0, read(image, size, 0).length, "an empty read at the end is fine");
    }
  }

  @ParameterizedTest
  @EnumSource(Kind.class)
  void blockStatusTilesTheDiskAndItsZerosReadAsZeros(Kind kind, @TempDir Path dir)
      throws Exception {
    Subject s = open(kind, dir);
    try (Image image = s.image()) {
      long pos = 0;
      int zeros = 0;
      while (pos < image.size()) {
        long max = 1 + (pos % 3) * 300_000; // the answer never passes maxLength
        Extent e = image.blockStatus(pos, max);
        assertEquals(pos, e.start());
        assertTrue(e.length() >= 1 && e.length() <= max, "length " + e.length() + " of " + max);
        if (e.zero() && (e.allocated() || kind != Kind.QCOW2)) {
          zeros++;
          byte[] got = read(image, e.start(), (int) e.length());
          assertArrayEquals(new byte[got.length], got, "zero extent " + e + " reads as zeros");
        }
        pos = e.end();
      }
      assertEquals(image.size(), pos, "the extents end at the disk's end");
      assertTrue(zeros > 0, "the image has zero ranges, so the check ran");
      List<Extent> merged = image.extents(0, image.size());
      for (int i = 1; i < merged.size(); i++) {
        assertEquals(merged.get(i - 1).end(), merged.get(i).start(), "extents are contiguous");
      }
    }
  }

  /**
   * Seeded writes, write-zeroes (with and without unmap) and discards, with flushes between, from 4
   * threads on separate quarters of the disk; then every byte reads as a raw model given the same
   * operations, through the open image, after it is closed and opened again, and through {@code
   * qemu-img convert} (with {@code qemu-img check} clean for qcow2). A discarded byte may read as
   * before or as zeros: what a discard leaves is the format's business.
   */
  @ParameterizedTest
  @EnumSource(Kind.class)
  void writesReadAsARawFileGivenTheSameOperations(Kind kind, @TempDir Path dir) throws Exception {
    Subject s = open(kind, dir, true);
    byte[] want = s.want().clone();
    java.util.BitSet loose = new java.util.BitSet(want.length); // discarded: old bytes or zeros
    ExecutorService pool = Executors.newFixedThreadPool(4);
    try (Image image = s.image()) {
      assertTrue(image.writable(), "opened writable");
      int quarter = want.length / 4;
      List<Future<?>> done = new ArrayList<>();
      for (int t = 0; t < 4; t++) {
        int from = t * quarter;
        int to = t == 3 ? want.length : from + quarter;
        Random r = new Random(kind.ordinal() * 100 + t);
        done.add(
            pool.submit(
                () -> {
                  for (int i = 0; i < 40; i++) {
                    int len = 1 + r.nextInt(r.nextBoolean() ? 4096 : 200_000);
                    int off = from + r.nextInt(to - from - len + 1);
                    int op = r.nextInt(10);
                    if (op < 6) {
                      byte[] data = new byte[len];
                      r.nextBytes(data);
                      image.write(ByteBuffer.wrap(data), off);
                      synchronized (want) {
                        System.arraycopy(data, 0, want, off, len);
                        loose.clear(off, off + len);
                      }
                    } else if (op < 8) {
                      image.writeZeroes(off, len, op == 7);
                      synchronized (want) {
                        Arrays.fill(want, off, off + len, (byte) 0);
                        loose.clear(off, off + len);
                      }
                    } else if (op == 8) {
                      image.discard(off, len);
                      synchronized (want) {
                        loose.set(off, off + len);
                      }
                    } else {
                      image.flush();
                    }
                  }
                  return null;
                }));
      }
      for (Future<?> f : done) {
        f.get();
      }
      image.flush();
      assertReadsAs(want, loose, read(image, 0, want.length), "through the open image");
    } finally {
      pool.shutdownNow();
    }
    try (Image again = reopen(kind, dir, false)) {
      assertReadsAs(want, loose, read(again, 0, want.length), "opened again");
    }
    storeToFiles(kind, dir);
    List<String> disk = qemuImage(kind, dir);
    if (disk.get(0).equals("qcow2")) {
      Qemu.img(dir, "check", "-q", disk.get(1));
    }
    Path raw = dir.resolve("qemu.raw");
    Qemu.img(dir, "convert", "-f", disk.get(0), "-O", "raw", disk.get(1), raw.toString());
    assertReadsAs(want, loose, Files.readAllBytes(raw), "as qemu-img convert reads it");
  }

  /** Every byte as {@code want}, or zero where {@code loose} (discarded). */
  private static void assertReadsAs(byte[] want, java.util.BitSet loose, byte[] got, String how) {
    assertEquals(want.length, got.length, how + ": length");
    for (int i = 0; i < want.length; i++) {
      if (got[i] != want[i] && !(loose.get(i) && got[i] == 0)) {
        throw new AssertionError(
            how
                + ": byte "
                + i
                + " reads "
                + got[i]
                + ", want "
                + want[i]
                + (loose.get(i) ? " or 0" : ""));
      }
    }
  }
}
