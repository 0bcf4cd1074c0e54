package org.jqcowfs.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.kenai.jffi.MemoryIO;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Arrays;
import java.util.Random;
import org.jqcowfs.storage.Storage;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The native calls made through jffi ({@link Posix}, {@link LinuxAio}) pass their arguments and
 * read their results right: each answer is checked against what Java itself reads or compresses.
 */
class NativeCallsTest {
  @TempDir Path dir;

  @Test
  void posixCallsSeeTheFileJavaWrote() throws IOException {
    Path file = dir.resolve("sparse");
    try (FileChannel ch =
        FileChannel.open(file, StandardOpenOption.CREATE, StandardOpenOption.WRITE)) {
      ch.write(ByteBuffer.wrap(new byte[4096]).put(0, (byte) 1), 1 << 20);
    }
    int fd = Posix.open(file.toString(), Posix.O_RDONLY | Posix.O_CLOEXEC);
    assertTrue(fd >= 0, "open: errno " + Posix.errno());
    try {
      assertEquals(1 << 20, Posix.lseek(fd, 0, Posix.SEEK_DATA));
      assertEquals((1 << 20) + 4096, Posix.lseek(fd, 1 << 20, Posix.SEEK_HOLE));
      assertEquals(-1, Posix.lseek(fd, 2 << 20, Posix.SEEK_DATA));
      assertEquals(Posix.ENXIO, Posix.errno());
      assertEquals(8, Posix.stBlocks(fd)); // one 4 KiB block, in 512-byte units
      assertEquals(1, Posix.cachedPages(fd, 1 << 20, 4096)); // just written
      long map = Posix.mmap(4096, Posix.PROT_READ, Posix.MAP_SHARED, fd, 1 << 20);
      assertTrue(map != Posix.MAP_FAILED, "mmap: errno " + Posix.errno());
      assertEquals(1, MemoryIO.getInstance().getByte(map));
      assertEquals(0, Posix.munmap(map, 4096));
    } finally {
      assertEquals(0, Posix.close(fd));
    }
    assertEquals(-1, Posix.open(dir.resolve("missing").toString(), Posix.O_RDONLY));
    assertEquals(2, Posix.errno()); // ENOENT
  }

  @Test
  void linuxAioBatchReadsTheBytesAtEachOffset() throws IOException {
    assumeTrue(LinuxAio.available(), "no Linux AIO here");
    Path file = dir.resolve("data");
    byte[] data = new byte[1 << 20];
    new Random(5).nextBytes(data);
    Files.write(file, data);
    int fd = Posix.open(file.toString(), Posix.O_RDONLY | Posix.O_CLOEXEC | Posix.O_DIRECT);
    assumeTrue(fd >= 0, "O_DIRECT refused by the temp dir's file system: errno " + Posix.errno());
    try {
      long[] positions = {3 << 16, 0, 15 << 16};
      ByteBuffer[] dsts = new ByteBuffer[positions.length];
      for (int i = 0; i < dsts.length; i++) {
        dsts[i] = Storage.alignedBuffer(1 << 16);
      }
      long[] results = new long[positions.length];
      LinuxAio.read(fd, dsts, positions, positions.length, results);
      for (int i = 0; i < positions.length; i++) {
        assertEquals(1 << 16, results[i], "read " + i);
        byte[] got = new byte[1 << 16];
        dsts[i].get(got);
        int at = (int) positions[i];
        assertArrayEquals(Arrays.copyOfRange(data, at, at + (1 << 16)), got, "read " + i);
      }
    } finally {
      Posix.close(fd);
    }
  }
}
