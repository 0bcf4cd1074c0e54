package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Random;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The kernel's page cache of a mounted flat file, as {@code fincore} sees it: a sequential reader
 * leaves only a tail of the file cached (drop-behind through FUSE_NOTIFY_INVAL_INODE), a random
 * reader's pages stay cached, and the bytes read equal {@code qemu-img convert}'s either way.
 */
class PageCacheIT {
  static final long MIB = 1L << 20;

  /** Bytes of {@code file} in the page cache ({@code fincore}, util-linux). */
  static long cachedBytes(Path file) throws Exception {
    Jqcowfs.Run r =
        Jqcowfs.exec(
            List.of("fincore", "--bytes", "--noheadings", "--output", "RES", file.toString()));
    assertEquals(0, r.code(), r.err());
    return Long.parseLong(r.out().trim());
  }

  /** A fully allocated 256 MiB image, 16 MiB per pattern. */
  static Path image(Path dir) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "disk.qcow2", "256M");
    String[] writes = new String[16];
    for (int i = 0; i < 16; i++) {
      writes[i] = "write -q -P " + (0x31 + i) + " " + i * 16 + "M 16M";
    }
    Qemu.io(dir, "disk.qcow2", writes);
    return dir.resolve("disk.qcow2");
  }

  @Test
  void aSequentialReadLeavesOnlyATailCached(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    Path reference = Qemu.convertRaw(image, dir.resolve("qemu.raw"), null);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path copy = dir.resolve("copy.raw");
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString())) {
      Path flat = m.file("disk.raw");
      Jqcowfs.Run dd =
          Jqcowfs.exec(List.of("dd", "if=" + flat, "of=" + copy, "bs=1M", "status=none"));
      assertEquals(0, dd.code(), dd.err());
      // lag 32 MiB + a step of 16 MiB + the readahead ahead of the last READ (8 MiB, one more
      // window started early); without drop-behind all 256 MiB stay cached
      long bound = 32 * MIB + 16 * MIB + 16 * MIB;
      long cached = cachedBytes(flat);
      for (int i = 0; i < 50 && cached > bound; i++) { // drops are written in the background
        Thread.sleep(100);
        cached = cachedBytes(flat);
      }
      System.out.printf("after dd of 256 MiB: %d MiB cached%n", cached / MIB);
      assertTrue(cached <= bound, cached + " bytes cached after a sequential read");
    }
    Jqcowfs.Run cmp = Jqcowfs.exec(List.of("cmp", reference.toString(), copy.toString()));
    assertEquals(0, cmp.code(), "dd's copy differs from qemu-img convert: " + cmp.out());
  }

  @Test
  void randomReadsStayCached(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    Path reference = Qemu.convertRaw(image, dir.resolve("qemu.raw"), null);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    int reads = 300;
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString());
        FileChannel flat = FileChannel.open(m.file("disk.raw"));
        FileChannel ref = FileChannel.open(reference)) {
      Random random = new Random(11);
      for (int i = 0; i < reads; i++) {
        long at = random.nextLong(256 * MIB / 4096) * 4096;
        ByteBuffer got = ByteBuffer.allocate(4096);
        ByteBuffer want = ByteBuffer.allocate(4096);
        flat.read(got, at);
        ref.read(want, at);
        assertArrayEquals(want.array(), got.array(), "4 KiB at " + at);
      }
      Thread.sleep(500); // a drop, had one been asked for, is written in the background
      long cached = cachedBytes(m.file("disk.raw"));
      System.out.printf("after %d random 4 KiB reads: %d KiB cached%n", reads, cached / 1024);
      assertTrue(cached >= reads * 4096L * 9 / 10, cached + " bytes cached after random reads");
    }
  }
}
