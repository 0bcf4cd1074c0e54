package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.concurrent.TimeUnit;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Faults under a live mount: the image truncated underneath, read errors from the disk holding the
 * image, and the daemon killed with SIGKILL (root mount(2) path, which has no watchdog). Failed
 * reads give EIO for the affected range only, never zeros, and are not cached.
 */
class FaultIT {
  private static final int MIB = 1 << 20;

  /** 64 MiB, 64 KiB clusters, every MiB written with its own byte (1, 2, ... 64). */
  private static Path image(Path dir) throws IOException {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "img.qcow2", "64M");
    String[] writes = new String[64];
    for (int i = 0; i < 64; i++) {
      writes[i] = "write -q -P " + (i + 1) + " " + i + "M 1M";
    }
    Qemu.io(dir, "img.qcow2", writes);
    return dir.resolve("img.qcow2");
  }

  /** Reads {@code length} bytes at {@code offset} with O_DIRECT, so the daemon is asked. */
  private static byte[] readDirect(Path file, long offset, int length) throws IOException {
    try (FileChannel ch =
        FileChannel.open(
            file, StandardOpenOption.READ, com.sun.nio.file.ExtendedOpenOption.DIRECT)) {
      ByteBuffer b = ByteBuffer.allocateDirect(length + 4096).alignedSlice(4096).limit(length);
      while (b.hasRemaining()) {
        if (ch.read(b, offset + b.position()) < 0) {
          throw new IOException("EOF");
        }
      }
      byte[] out = new byte[length];
      b.flip().get(out);
      return out;
    }
  }

  private static byte[] filled(int length, int value) {
    byte[] b = new byte[length];
    Arrays.fill(b, (byte) value);
    return b;
  }

  /** Host offset of the cluster at guest offset {@code guest}, from qemu-img map. */
  private static long hostOffset(Path image, long guest) throws IOException {
    for (JsonNode e : new ObjectMapper().readTree(Qemu.mapJson(image))) {
      long start = e.get("start").asLong();
      if (guest >= start && guest < start + e.get("length").asLong() && e.has("offset")) {
        return e.get("offset").asLong() + (guest - start);
      }
    }
    throw new IOException("no host offset for guest " + guest);
  }

  @Test
  void truncatedUnderLiveMountGivesEioPastTheNewEndNeverZeros(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString())) {
      Path flat = m.file("img.raw");
      assertArrayEquals(filled(MIB, 1), readDirect(flat, 0, MIB));
      long cut = hostOffset(image, 32L * MIB);
      try (RandomAccessFile raf = new RandomAccessFile(image.toFile(), "rw")) {
        raf.setLength(cut);
      }
      // Guest MiB 32 and later live past the new end: EIO, by O_DIRECT and by a buffered read.
      for (long guest : new long[] {32L * MIB, 63L * MIB}) {
        IOException e = assertThrows(IOException.class, () -> readDirect(flat, guest, MIB));
        assertTrue(String.valueOf(e.getMessage()).contains("Input/output error"), e.toString());
      }
      assertThrows(IOException.class, () -> Files.readAllBytes(flat));
      // Before the cut: still the data.
      assertArrayEquals(filled(MIB, 31), readDirect(flat, 30L * MIB, MIB));
      assertTrue(m.log().contains("past the end"), m.log());
    }
  }

  @Test
  void readErrorFromTheDiskIsEioForThatRangeOnlyAndNotCached(@TempDir Path dir) throws Exception {
    Path image = image(dir);
    Path faultyMnt = Files.createDirectory(dir.resolve("faulty"));
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    long bad = hostOffset(image, 8L * MIB);
    try (FaultyFs disk = FaultyFs.mount(image, faultyMnt);
        Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, disk.path().toString())) {
      Path flat = m.file("img.raw");
      disk.fail(bad, bad + 65536);
      IOException e = assertThrows(IOException.class, () -> readDirect(flat, 8L * MIB, MIB));
      assertTrue(String.valueOf(e.getMessage()).contains("Input/output error"), e.toString());
      assertTrue(disk.failedReads() > 0, "the bad range was read");
      // Other ranges read right while the bad one fails.
      assertArrayEquals(filled(MIB, 8), readDirect(flat, 7L * MIB, MIB));
      assertArrayEquals(filled(65536, 9), readDirect(flat, 8L * MIB + 65536, 65536));
      // A buffered read of the bad range fails too: the failure did not enter the page cache.
      assertThrows(IOException.class, () -> readBuffered(flat, 8L * MIB, 65536));
      disk.heal();
      assertArrayEquals(filled(MIB, 9), readDirect(flat, 8L * MIB, MIB));
      assertArrayEquals(filled(65536, 9), readBuffered(flat, 8L * MIB, 65536));
      assertEquals(
          Qemu.sha256(Qemu.convertRaw(image, dir.resolve("ref.raw"), null)), Qemu.sha256(flat));
    }
  }

  private static byte[] readBuffered(Path file, long offset, int length) throws IOException {
    try (RandomAccessFile raf = new RandomAccessFile(file.toFile(), "r")) {
      byte[] b = new byte[length];
      raf.seek(offset);
      raf.readFully(b);
      return b;
    }
  }

  @Test
  void unmountRecoversTheStaleMountOfAKilledRootDaemon(@TempDir Path dir) throws Exception {
    assumeTrue("root".equals(System.getProperty("user.name")), "mount(2) path: root only");
    Path image = image(dir);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString());
    try {
      m.process.destroyForcibly().waitFor(20, TimeUnit.SECONDS);
      assertTrue(Jqcowfs.mounted(mnt), "as root the kernel keeps the dead mount");
      IOException e = assertThrows(IOException.class, () -> Files.readAllBytes(m.file("img.raw")));
      assertTrue(
          String.valueOf(e.getMessage()).contains("Transport endpoint is not connected")
              || String.valueOf(e.getMessage()).contains("not connected"),
          e.toString());
      Jqcowfs.Run r = Jqcowfs.run("unmount", mnt.toString());
      assertEquals(0, r.code(), r.err());
      assertFalse(Jqcowfs.mounted(mnt));
    } finally {
      m.close();
    }
  }
}
