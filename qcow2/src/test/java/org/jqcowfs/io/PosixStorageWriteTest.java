package org.jqcowfs.io;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.NonWritableChannelException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link PosixStorage}'s write side: what it writes, Java reads; punched holes read as zeros;
 * reserved ranges read as before.
 */
class PosixStorageWriteTest {
  private static final int MIB = 1 << 20;

  @TempDir Path dir;

  @Test
  void writesGrowTheFileAndPunchedHolesReadAsZeros() throws IOException {
    Path path = dir.resolve("f");
    Files.write(path, new byte[0]);
    byte[] data = new byte[2 * MIB];
    Arrays.fill(data, (byte) 0x5a);
    try (PosixStorage f = PosixStorage.open(path, HostFileOptions.DEFAULT.withWritable(true))) {
      f.write(ByteBuffer.wrap(data), MIB);
      f.flush();
      assertEquals(3 * MIB, f.length());
      f.punchHole(MIB, MIB);
      assertEquals(2 * MIB, f.seekData(0), "the punched MiB and the unwritten one are holes");
      assertEquals(3 * MIB, f.length(), "punching keeps the length");
    }
    byte[] want = new byte[3 * MIB];
    Arrays.fill(want, 2 * MIB, 3 * MIB, (byte) 0x5a);
    assertArrayEquals(want, Files.readAllBytes(path));
  }

  @Test
  void allocateAndReserveGrowTheFileKeepItsBytesAndNameAFailureInWords() throws IOException {
    Path path = dir.resolve("a");
    Files.write(path, new byte[] {7});
    try (PosixStorage f = PosixStorage.open(path, HostFileOptions.DEFAULT.withWritable(true))) {
      f.allocate(0, 2 * MIB);
      assertEquals(2 * MIB, f.length());
      assertEquals(2 * MIB, f.allocatedBytes(), "reserved, not a hole");
      f.reserve(2 * MIB, MIB);
      assertEquals(3 * MIB, f.length());
      assertEquals(3 * MIB, f.allocatedBytes(), "reserve reserves where fallocate works");
      IOException e = assertThrows(IOException.class, () -> f.allocate(-4096, 4096));
      assertTrue(e.getMessage().contains("Invalid argument (errno 22)"), e.getMessage());
    }
    byte[] want = new byte[3 * MIB];
    want[0] = 7;
    assertArrayEquals(want, Files.readAllBytes(path));
  }

  @Test
  void aReadOnlyFileRefusesWrites() throws IOException {
    Path path = dir.resolve("ro");
    Files.write(path, new byte[4096]);
    try (PosixStorage f = PosixStorage.open(path, HostFileOptions.DEFAULT)) {
      assertThrows(NonWritableChannelException.class, () -> f.write(ByteBuffer.allocate(1), 0));
      assertThrows(NonWritableChannelException.class, f::flush);
      assertThrows(NonWritableChannelException.class, () -> f.punchHole(0, 4096));
    }
  }
}
