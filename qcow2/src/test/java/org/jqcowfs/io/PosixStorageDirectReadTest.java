package org.jqcowfs.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.storage.Storage;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Reads of data the page cache does not hold go around it ({@link Storage}): the bytes equal
 * qemu-img convert's, and the image's cached bytes ({@code fincore}) do not grow by what was read.
 * Reads into unaligned buffers go through the cache; ranges cached in full or in part read right.
 */
class PosixStorageDirectReadTest {
  private static final int MIB = 1 << 20;

  @TempDir Path dir;

  private Path image;
  private byte[] want;

  /** 8 MiB of data in one qcow2 image (contiguous host clusters), out of the page cache. */
  @BeforeEach
  void image() throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "a.qcow2", "8M");
    Qemu.io(dir, "a.qcow2", "write -q -P 0x5a 0 3M", "write -q -P 0xa5 3M 5M");
    image = dir.resolve("a.qcow2");
    want = Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("a.raw"), null));
    evict();
  }

  @Test
  void uncachedDataReadIntoAnAlignedBufferBypassesThePageCache() throws Exception {
    long before = cachedBytes();
    ByteBuffer buf = Storage.alignedBuffer(8 * MIB);
    try (Qcow2Image q = Qcow2Image.open(image)) {
      q.read(buf, 0);
    }
    assertArrayEquals(want, bytes(buf.flip()));
    long grown = cachedBytes() - before;
    // The header, L1 and L2 tables are read through the cache (a few clusters); the data is not.
    assertTrue(grown < MIB, "cached bytes grew by " + grown + " reading 8 MiB of data");
  }

  /** Compressed streams (unaligned in the file) are read in aligned spans around the cache too. */
  @Test
  void uncachedCompressedClustersBypassThePageCache() throws Exception {
    byte[] raw = new byte[8 * MIB];
    Random random = new Random(5);
    for (int i = 0; i < raw.length; i += 4096) {
      byte[] half = new byte[2048];
      random.nextBytes(half);
      System.arraycopy(half, 0, raw, i, half.length); // half random, half zeros: about 2:1
    }
    Files.write(dir.resolve("c.raw"), raw);
    for (String type : new String[] {"zlib", "zstd"}) {
      String name = "c-" + type + ".qcow2";
      Qemu.img(
          dir, "convert", "-c", "-O", "qcow2", "-o", "compression_type=" + type, "c.raw", name);
      image = dir.resolve(name);
      evict();
      long before = cachedBytes();
      ByteBuffer buf = Storage.alignedBuffer(8 * MIB);
      try (Qcow2Image q = Qcow2Image.open(image)) {
        q.read(buf, 0);
      }
      long grown = cachedBytes() - before;
      long stored = Files.size(image);
      assertTrue(
          grown < stored / 4,
          type + ": cached bytes grew by " + grown + " of " + stored + " stored");
      byte[] qemu = Files.readAllBytes(Qemu.convertRaw(image, dir.resolve(type + ".raw"), null));
      assertArrayEquals(qemu, bytes(buf.flip()), type);
    }
  }

  /**
   * A fragmented image (64 KiB clusters written in random order): the separate host ranges of one
   * read that the cache does not hold go in Linux AIO batches, those it holds are copied from it,
   * and the bytes equal qemu-img's either way.
   */
  @Test
  void uncachedFragmentedClustersAreReadInLinuxAioBatches() throws Exception {
    assumeTrue(Files.exists(Path.of("/proc/sys/fs/aio-max-nr")), "no Linux AIO in this kernel");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "f.qcow2", "32M");
    List<Integer> order = new ArrayList<>();
    for (int i = 0; i < 512; i++) {
      order.add(i);
    }
    Collections.shuffle(order, new Random(7));
    List<String> writes = new ArrayList<>();
    for (int c : order) {
      writes.add("write -q -P " + (c % 251 + 1) + " " + c * 64 + "k 64k");
    }
    Qemu.io(dir, "f.qcow2", writes.toArray(String[]::new));
    image = dir.resolve("f.qcow2");
    byte[] qemu = Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("f.raw"), null));
    evict();
    long before = cachedBytes();
    long batched = LinuxAio.completedReads();
    try (Qcow2Image q = Qcow2Image.open(image)) {
      ByteBuffer buf = Storage.alignedBuffer(32 * MIB);
      q.read(buf, 0);
      assertArrayEquals(qemu, bytes(buf.flip()));
      // Most of 512 ranges went in batches (a range that happens to follow the one before it in
      // the file is read together with it).
      long inBatches = LinuxAio.completedReads() - batched;
      assertTrue(inBatches >= 256, inBatches + " of 512 ranges read in AIO batches");
      long grown = cachedBytes() - before;
      assertTrue(grown < MIB, "cached bytes grew by " + grown + " reading 32 MiB of data");

      // The first 16 MiB of the file in the cache, the rest not (read, then dropped from the
      // cache from 16 MiB on, whatever the kernel's readahead): each read mixes both kinds.
      Qemu.run(dir, "dd", "if=" + image, "of=/dev/null", "bs=1M", "status=none");
      Qemu.run(
          dir, "dd", "if=" + image, "bs=1M", "skip=16", "count=0", "iflag=nocache", "status=none");
      long cached = cachedBytes();
      assertTrue(cached >= 16 * MIB && cached < 24 * MIB, cached + " bytes cached, not 16 MiB");
      batched = LinuxAio.completedReads();
      ByteBuffer again = Storage.alignedBuffer(32 * MIB);
      q.read(again, 0);
      assertArrayEquals(qemu, bytes(again.flip()));
      assertTrue(LinuxAio.completedReads() > batched, "no AIO batch for the uncached half");
    }
  }

  @Test
  void cachedDataAndUnalignedBuffersReadThroughThePageCache() throws Exception {
    try (Qcow2Image q = Qcow2Image.open(image)) {
      ByteBuffer unaligned =
          Storage.alignedBuffer(4 * MIB + 4096).position(16).slice().limit(4 * MIB);
      q.read(unaligned, 0);
      assertArrayEquals(Arrays.copyOf(want, 4 * MIB), bytes(unaligned.flip()));
      assertTrue(cachedBytes() >= 4 * MIB, "an unaligned read left " + cachedBytes() + " cached");

      // Half of this range is cached now, half is not: both halves read right.
      ByteBuffer buf = Storage.alignedBuffer(6 * MIB);
      q.read(buf, 2 * MIB);
      assertArrayEquals(Arrays.copyOfRange(want, 2 * MIB, 8 * MIB), bytes(buf.flip()));
    }
  }

  private static byte[] bytes(ByteBuffer b) {
    byte[] out = new byte[b.remaining()];
    b.get(out);
    return out;
  }

  /** Drops the image's pages from the page cache (written back first). */
  private void evict() throws Exception {
    Qemu.run(dir, "sync", image.toString());
    Qemu.run(dir, "dd", "if=" + image, "iflag=nocache", "count=0", "status=none");
    // A file system that is all page cache (tmpfs) keeps it: nothing to test there.
    assumeTrue(cachedBytes() < MIB, "the image stays cached (tmpfs?): " + cachedBytes() + " bytes");
  }

  /** Bytes of the image the page cache holds, as fincore(1) counts them. */
  private long cachedBytes() throws Exception {
    String out =
        Qemu.run(dir, "fincore", "--bytes", "--noheadings", "--output", "RES", image.toString());
    return Long.parseLong(out.trim());
  }
}
