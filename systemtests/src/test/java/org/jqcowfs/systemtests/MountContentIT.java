package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Set;
import java.util.stream.Stream;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;
import org.jqcowfs.qcow2.testing.ImageMatrix;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Real mounts of images of the matrix, by both backends: the mounted file's bytes equal {@code
 * qemu-img convert -O raw}, and (kernel backend) a SEEK_DATA/SEEK_HOLE walk over it equals the data
 * segments of {@code qemu-img map}, holes included. Snapshot views equal {@code convert -l}.
 */
class MountContentIT {
  static final Set<String> CASES =
      Set.of(
          "v3-64k",
          "deflate-64k",
          "zstd-64k",
          "extl2-64k",
          "zero-clusters",
          "chain-raw-deflate-zstd-extl2",
          "snapshots");

  static Stream<Arguments> cases() {
    return ImageMatrix.all().stream()
        .filter(n -> CASES.contains(n.name()))
        .flatMap(n -> Stream.of(Arguments.of(n, "kernel"), Arguments.of(n, "jnr-fuse")));
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("cases")
  void mountedFileEqualsQemu(ImageMatrix.Named named, String backend, @TempDir Path dir)
      throws Exception {
    ImageMatrix.Case c = named.recipe().build(dir);
    Path reference = Qemu.convertRaw(c.image(), dir.resolve("qemu.raw"), null);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    String name = FlatFileSystem.rawName(c.image());
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--backend", backend, c.image().toString())) {
      Path flat = m.file(name);
      assertEquals(Files.size(reference), Files.size(flat), "st_size");
      assertEquals(Qemu.sha256(reference), Qemu.sha256(flat), "content of " + flat);
      if (backend.equals("kernel")) {
        List<List<Long>> want = Holes.qemu(c.image());
        List<List<Long>> got = Holes.walk(flat);
        assertEquals(want, got, "SEEK_DATA/SEEK_HOLE segments");
        assertTrue(Holes.bytes(got) < Files.size(flat), "the walk must find real holes: " + got);
      }
    }
    for (String snapshot : c.snapshots()) {
      Path snapRef = Qemu.convertRaw(c.image(), dir.resolve("qemu-" + snapshot + ".raw"), snapshot);
      try (Jqcowfs.Mount m =
          Jqcowfs.Mount.of(
              mnt, "--backend", backend, "--snapshot", snapshot, c.image().toString())) {
        assertEquals(Qemu.sha256(snapRef), Qemu.sha256(m.file(name)), "snapshot " + snapshot);
      }
    }
  }

  /**
   * mmap(2) of the flat file works (it would fail with ENODEV on a FOPEN_DIRECT_IO file without
   * FUSE_DIRECT_IO_ALLOW_MMAP): the mapped bytes equal qemu-img's.
   */
  @Test
  void mmapOfTheFlatFileEqualsQemu(@TempDir Path dir) throws Exception {
    Path image = Jqcowfs.ROOT.resolve("examples/overlay.qcow2");
    byte[] want = Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("qemu.raw"), null));
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString());
        FileChannel ch = FileChannel.open(m.file("overlay.raw"), StandardOpenOption.READ)) {
      MappedByteBuffer mapped = ch.map(FileChannel.MapMode.READ_ONLY, 0, ch.size());
      byte[] got = new byte[want.length];
      mapped.get(got);
      assertArrayEquals(want, got);
    }
  }
}
