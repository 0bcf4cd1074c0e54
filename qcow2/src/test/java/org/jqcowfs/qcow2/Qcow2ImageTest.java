package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class Qcow2ImageTest {
  @TempDir Path dir;

  @Test
  void badMagicIsRefusedByTheQcow2Parser() throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "a.qcow2", "1M");
    try (RandomAccessFile raf = new RandomAccessFile(dir.resolve("a.qcow2").toFile(), "rw")) {
      raf.writeInt(0x51464900);
    }
    ImageFormatException e =
        assertThrows(ImageFormatException.class, () -> Qcow2Image.open(dir.resolve("a.qcow2")));
    assertTrue(e.getMessage().contains("magic 0x51464900"), e.getMessage());
  }

  @Test
  void l2CacheLoadsEachTableOnceAndCountsHits() throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "a.qcow2", "8M");
    Qemu.io(dir, "a.qcow2", "write -q -P 1 0 8M");
    try (Qcow2Image q = Qcow2Image.open(dir.resolve("a.qcow2"))) {
      ByteBuffer b = ByteBuffer.allocate(4096);
      for (int round = 0; round < 3; round++) {
        for (long off = 0; off < 8 << 20; off += 1 << 20) {
          q.read(b.clear(), off);
        }
      }
      // 4 KiB clusters: one L2 table maps 2 MiB, so 8 MiB needs 4 tables.
      assertEquals(4, q.cacheStats().misses());
      assertEquals(20, q.cacheStats().hits());
    }
  }

  /**
   * A 1 TiB image with one cluster written at 600 GiB: the unallocated L1 entries before it (1200
   * of 512 MiB) are one block status answer, as long as qemu-img map's first extent, and the
   * written cluster comes next.
   */
  @Test
  void unallocatedL1EntriesInARowAreOneBlockStatusAnswer() throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "a.qcow2", "1T");
    Qemu.io(dir, "a.qcow2", "write -q -P 7 600G 64k");
    String map = Qemu.mapJson(dir.resolve("a.qcow2"));
    java.util.regex.Matcher first =
        java.util.regex.Pattern.compile("\\{[^}]*\"start\": 0, \"length\": (\\d+)").matcher(map);
    assertTrue(first.find(), map);
    long qemuLength = Long.parseLong(first.group(1));
    try (Qcow2Image q = Qcow2Image.open(dir.resolve("a.qcow2"))) {
      Extent e = q.blockStatus(0, q.size());
      assertEquals(600L << 30, qemuLength, map);
      assertEquals(qemuLength, e.length(), e.toString());
      assertTrue(!e.allocated() && !e.data(), e.toString());
      Extent next = q.blockStatus(e.end(), q.size() - e.end());
      assertTrue(next.allocated() && next.data(), next.toString());
      assertEquals(65536, next.length(), next.toString());
    }
  }

  /**
   * One read spanning many clusters, gathered and done in parallel: compressed streams that lie
   * side by side (qemu-img convert -c, more than one 8 MiB group of streams), compressed and plain
   * clusters written in reverse guest order (host offsets falling as the guest offset rises), for
   * deflate and zstd; each read compared with qemu-img convert's output, from unaligned offsets,
   * into direct and heap buffers.
   */
  @Test
  void largeReadsAcrossCompressedAndFragmentedClustersMatchQemu() throws Exception {
    int mib = 24;
    byte[] data = new byte[mib << 20];
    Random r = new Random(5);
    for (int c = 0; c < data.length >> 16; c++) {
      // Half random, half a pattern: compresses to about half a cluster, never to nothing.
      for (int i = 0; i < 1 << 15; i++) {
        data[(c << 16) + i] = (byte) r.nextInt();
        data[(c << 16) + (1 << 15) + i] = (byte) (c + i / 512);
      }
    }
    Files.write(dir.resolve("src.raw"), data);
    for (String type : List.of("zlib", "zstd")) {
      String packed = "packed-" + type + ".qcow2";
      Qemu.img(
          dir,
          "convert",
          "-q",
          "-c",
          "-O",
          "qcow2",
          "-o",
          "compression_type=" + type,
          "src.raw",
          packed);
      String reversed = "reversed-" + type + ".qcow2";
      Qemu.img(
          dir,
          "create",
          "-q",
          "-f",
          "qcow2",
          "-o",
          "compression_type=" + type,
          reversed,
          mib + "M");
      List<String> writes = new ArrayList<>();
      for (int c = (mib << 4) - 1; c >= 0; c--) {
        writes.add(
            "write -q "
                + (c % 3 == 0 ? "" : "-c ")
                + "-P "
                + (c % 250 + 1)
                + " "
                + (c << 16)
                + " 64k");
      }
      Qemu.io(dir, reversed, writes.toArray(String[]::new));
      for (String image : List.of(packed, reversed)) {
        Path ref = Qemu.convertRaw(dir.resolve(image), dir.resolve(image + ".raw"), null);
        try (Qcow2Image q = Qcow2Image.open(dir.resolve(image));
            FileChannel want = FileChannel.open(ref)) {
          long[][] ranges = {{0, mib << 20}, {1000, (mib << 20) - 5000}, {65535, 3 << 20}};
          for (long[] range : ranges) {
            for (boolean direct : new boolean[] {true, false}) {
              int len = (int) range[1];
              ByteBuffer ours = direct ? ByteBuffer.allocateDirect(len) : ByteBuffer.allocate(len);
              q.read(ours, range[0]);
              ByteBuffer expected = ByteBuffer.allocate(len);
              want.read(expected, range[0]);
              assertEquals(
                  expected.flip(),
                  ours.flip(),
                  image
                      + ": read of "
                      + len
                      + " bytes at "
                      + range[0]
                      + (direct ? " (direct)" : ""));
            }
          }
        }
      }
    }
  }
}
