package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.Path;
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
    Qcow2FormatException e =
        assertThrows(Qcow2FormatException.class, () -> Qcow2Image.open(dir.resolve("a.qcow2")));
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
}
