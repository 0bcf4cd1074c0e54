package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.UserDefinedFileAttributeView;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code cp --sparse=always} from a mount reads only the data (counted by the filesystem's own
 * read-bytes counter), and SEEK_DATA/SEEK_HOLE over a 1 TiB image find its few MiB without
 * scanning.
 */
class SparseCopyIT {
  private static final long MIB = 1 << 20;

  /** The {@code user.jqcowfs.read_bytes} counter of the mount. */
  static long readBytes(Path mnt) throws Exception {
    UserDefinedFileAttributeView view =
        Files.getFileAttributeView(mnt, UserDefinedFileAttributeView.class);
    ByteBuffer b = ByteBuffer.allocate(32);
    view.read("jqcowfs.read_bytes", b);
    return Long.parseLong(new String(b.array(), 0, b.position(), StandardCharsets.US_ASCII));
  }

  @Test
  void cpSparseReadsOnlyTheData(@TempDir Path dir) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "big.qcow2", "4G");
    // 128 MiB in 2 runs of 64 MiB, as a disk's data tends to lie. Kernel readahead (8 MiB for a
    // root mount, doubled to 16 MiB by cp's FADV_SEQUENTIAL, and the next window started early)
    // reads on past each run's end into the hole: measured 173-189 MiB read for these 128 MiB.
    // Without SEEK_DATA cp would read all 4096 MiB.
    List<String> writes = new ArrayList<>();
    for (long run : new long[] {16, 2500}) {
      for (int i = 0; i < 64; i++) {
        writes.add("write -q -P " + (1 + i + run % 100) + " " + (run + i) + "M 1M");
      }
    }
    Qemu.io(dir, "big.qcow2", writes.toArray(String[]::new));
    Path image = dir.resolve("big.qcow2");
    Path reference = Qemu.convertRaw(image, dir.resolve("qemu.raw"), null);
    long data = Holes.bytes(Holes.qemu(image));
    assertEquals(128 * MIB, data);

    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path copy = dir.resolve("copy.raw");
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString())) {
      long before = readBytes(mnt);
      Jqcowfs.Run cp =
          Jqcowfs.exec(
              List.of("cp", "--sparse=always", m.file("big.raw").toString(), copy.toString()));
      assertEquals(0, cp.code(), cp.err());
      long read = readBytes(mnt) - before;
      System.out.printf("cp --sparse=always: read %d bytes for %d bytes of data%n", read, data);
      assertTrue(read > 0, "the counter must count");
      long readaheadPerRun = 48 * MIB; // three 16 MiB windows past the run's end
      assertTrue(
          read <= data + 2 * readaheadPerRun, "read " + read + " bytes for " + data + " of data");
    }
    Jqcowfs.Run cmp = Jqcowfs.exec(List.of("cmp", reference.toString(), copy.toString()));
    assertEquals(0, cmp.code(), "copy differs from qemu-img convert: " + cmp.out());
    try (PosixStorage f = PosixStorage.open(copy, HostFileOptions.DEFAULT)) {
      assertTrue(f.allocatedBytes() <= data * 11 / 10, "copy is not sparse: " + f.allocatedBytes());
    }
  }

  @Test
  void seekWalkOverOneTebibyte(@TempDir Path dir) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "huge.qcow2", "1T");
    Qemu.io(
        dir,
        "huge.qcow2",
        "write -q -P 1 0 1M",
        "write -q -P 2 300G 2M",
        "write -q -P 3 700G 64k",
        "write -q -z 800G 1M",
        "write -q -P 4 1023G 1M");
    Path image = dir.resolve("huge.qcow2");
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString())) {
      Path flat = m.file("huge.raw");
      assertEquals(1L << 40, Files.size(flat));
      long t0 = System.nanoTime();
      List<List<Long>> got =
          assertTimeoutPreemptively(Duration.ofSeconds(20), () -> Holes.walk(flat));
      long millis = (System.nanoTime() - t0) / 1_000_000;
      System.out.printf("SEEK walk over 1 TiB: %d segments in %d ms%n", got.size(), millis);
      assertEquals(Holes.qemu(image), got);
      assertEquals(4, got.size(), "segments: " + got);
    }
  }
}
