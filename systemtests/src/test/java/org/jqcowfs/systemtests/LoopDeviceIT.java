package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Other tools loop-mount the flat file: {@code losetup -r} on the partition of the example chain's
 * GPT disk, ext4 mounted read-only inside, and the overlay's changed file reads as it does from
 * {@code qemu-img convert}'s output.
 */
class LoopDeviceIT {
  @Test
  void ext4InsideTheFlatFileMounts(@TempDir Path dir) throws Exception {
    Path image = Jqcowfs.ROOT.resolve("examples/overlay.qcow2");
    Path reference = Qemu.convertRaw(image, dir.resolve("qemu.raw"), null);
    long[] part = partition(reference);
    Path partFile = dir.resolve("part.ext4");
    Jqcowfs.Run dd =
        Jqcowfs.exec(
            List.of(
                "dd",
                "if=" + reference,
                "of=" + partFile,
                "bs=512",
                "skip=" + part[0],
                "count=" + part[1],
                "status=none"));
    assertEquals(0, dd.code(), dd.err());
    Jqcowfs.Run expected =
        Jqcowfs.exec(List.of("debugfs", "-R", "cat /hello.txt", partFile.toString()));
    assertEquals(0, expected.code(), expected.err());
    assertTrue(expected.out().length() > 0, "the example has /hello.txt");

    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path ext4 = Files.createDirectory(dir.resolve("ext4"));
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString())) {
      Path flat = m.file("overlay.raw");
      assertEquals(
          List.of(part[0], part[1]).toString(),
          List.of(partition(flat)[0], partition(flat)[1]).toString());
      String loop = attach(flat, part, true);
      try {
        Jqcowfs.Run mount =
            Jqcowfs.exec(List.of("mount", "-t", "ext4", "-o", "ro,noload", loop, ext4.toString()));
        assertEquals(0, mount.code(), mount.err());
        try {
          assertEquals(expected.out(), Files.readString(ext4.resolve("hello.txt")));
        } finally {
          assertEquals(0, Jqcowfs.exec(List.of("umount", ext4.toString())).code());
        }
      } finally {
        assertEquals(0, Jqcowfs.exec(List.of("losetup", "-d", loop)).code());
      }
    }
  }

  /**
   * A loop device on partition {@code part} (first sector, sector count) of {@code disk}, read-only
   * ({@code losetup -r}) or read-write; returns its path.
   */
  static String attach(Path disk, long[] part, boolean readOnly) throws Exception {
    List<String> cmd = new java.util.ArrayList<>(List.of("losetup"));
    if (readOnly) {
      cmd.add("-r");
    }
    cmd.addAll(
        List.of(
            "-f",
            "--show",
            "-o",
            Long.toString(part[0] * 512),
            "--sizelimit",
            Long.toString(part[1] * 512),
            disk.toString()));
    Jqcowfs.Run r = Jqcowfs.exec(cmd);
    assertEquals(0, r.code(), r.err());
    return r.out().trim();
  }

  /** First sector and sector count of partition 1 of a GPT disk, from sgdisk. */
  static long[] partition(Path disk) throws Exception {
    Jqcowfs.Run r = Jqcowfs.exec(List.of("sgdisk", "-i", "1", disk.toString()));
    assertEquals(0, r.code(), r.err());
    long first = -1;
    long last = -1;
    for (String line : r.out().split("\n")) {
      if (line.startsWith("First sector:")) {
        first = Long.parseLong(line.split("\\s+")[2]);
      } else if (line.startsWith("Last sector:")) {
        last = Long.parseLong(line.split("\\s+")[2]);
      }
    }
    assertTrue(first > 0 && last > first, r.out());
    return new long[] {first, last - first + 1};
  }
}
