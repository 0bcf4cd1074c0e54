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
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.raw.RawImage;
import org.jqcowfs.readahead.ReadAheadImage;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * The {@link Image} contract, one suite for every implementation: {@link RawImage}, {@link
 * Qcow2Image}, {@link BackingChain} and the {@link ReadAheadImage} decorator (writable images will
 * join it). Each is built by qemu-img and qemu-io, and its answers are checked against {@code
 * qemu-img convert -O raw} of the same file: size, whole and random reads, reads from 8 threads at
 * once, ranges outside the disk, and block status that tiles the disk with extents whose zero
 * ranges read as zeros.
 */
class ImageContractTest {
  /** The implementations under test and how each is opened from its file. */
  enum Kind {
    RAW,
    QCOW2,
    CHAIN,
    READ_AHEAD
  }

  record Subject(Image image, byte[] want) {}

  /** 12 MiB: data, zero clusters, unallocated ranges, an unaligned tail. */
  static Subject open(Kind kind, Path dir) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "base.qcow2", "12M");
    Qemu.io(dir, "base.qcow2", "write -q -P 1 0 1M", "write -q -P 2 5M 64k", "write -q -z 6M 1M");
    Qemu.img(
        dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "12M");
    Qemu.io(dir, "top.qcow2", "write -q -P 3 512k 1M", "write -q -z 5M 4k", "write -q -P 4 11M 7k");
    Path file =
        switch (kind) {
          case RAW -> Qemu.convertRaw(dir.resolve("top.qcow2"), dir.resolve("disk.raw"), null);
          case QCOW2 -> dir.resolve("base.qcow2");
          case CHAIN, READ_AHEAD -> dir.resolve("top.qcow2");
        };
    byte[] want =
        Files.readAllBytes(
            kind == Kind.RAW ? file : Qemu.convertRaw(file, dir.resolve("want.raw"), null));
    Image image =
        switch (kind) {
          case RAW -> RawImage.open(file);
          case QCOW2 -> Qcow2Image.open(file);
          case CHAIN -> ChainOpener.open(file);
          case READ_AHEAD -> new ReadAheadImage(ChainOpener.open(file), 8L << 20);
        };
    return new Subject(image, want);
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
}
