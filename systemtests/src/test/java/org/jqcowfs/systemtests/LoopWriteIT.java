package org.jqcowfs.systemtests;

import static org.jqcowfs.systemtests.ChannelWrites.writeAt;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.List;
import java.util.Random;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A real client writes: {@code losetup} (read-write) on the flat file of an overlay over the
 * example's GPT + ext4 disk, ext4 mounted, files created, changed and deleted, {@code e2fsck -fn}
 * clean; after the unmounts {@code qemu-img check} is clean and the files read back from {@code
 * qemu-img convert}'s output, while the example image is untouched. And {@code mkfs.ext4} through a
 * loop device on a fresh empty image; and an image that is itself on a loop device.
 */
class LoopWriteIT {
  @Test
  void ext4ChangedThroughALoopDevice(@TempDir Path dir) throws Exception {
    Path example = Jqcowfs.ROOT.resolve("examples/overlay.qcow2");
    String exampleHash = Qemu.sha256(example);
    Path overlay = dir.resolve("changes.qcow2");
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path ext4 = Files.createDirectory(dir.resolve("ext4"));
    byte[] big = new byte[3 << 20];
    new Random(3).nextBytes(big);
    Files.write(dir.resolve("big.bin"), big);
    try (Jqcowfs.Mount m =
        Jqcowfs.Mount.of(mnt, "--overlay", overlay.toString(), example.toString())) {
      Path flat = m.file("changes.raw");
      long[] part = LoopDeviceIT.partition(flat);
      String loop = LoopDeviceIT.attach(flat, part, false);
      try {
        run("mount", "-t", "ext4", loop, ext4.toString());
        try {
          Files.copy(dir.resolve("big.bin"), ext4.resolve("big.bin"));
          Files.writeString(ext4.resolve("hello.txt"), "changed through jqcowfs\n");
          Files.writeString(ext4.resolve("gone.txt"), "deleted below\n");
          Files.delete(ext4.resolve("gone.txt"));
        } finally {
          run("umount", ext4.toString());
        }
        Jqcowfs.Run fsck = Jqcowfs.exec(List.of("e2fsck", "-fn", loop));
        assertEquals(0, fsck.code(), "e2fsck -fn: " + fsck.out() + fsck.err());
      } finally {
        run("losetup", "-d", loop);
      }
    }
    Qemu.Check check = Qemu.check(overlay);
    assertEquals(0, check.exitStatus(), "qemu-img check: " + check);
    assertEquals(exampleHash, Qemu.sha256(example), "the example image is untouched");
    Path raw = Qemu.convertRaw(overlay, dir.resolve("out.raw"), null);
    Path partFile = extract(raw, dir.resolve("part.ext4"));
    assertEquals("changed through jqcowfs\n", debugfsCat(partFile, "/hello.txt"));
    Jqcowfs.Run dump =
        Jqcowfs.exec(
            List.of(
                "debugfs", "-R", "dump /big.bin " + dir.resolve("big.out"), partFile.toString()));
    assertEquals(0, dump.code(), dump.err());
    assertEquals(Qemu.sha256(dir.resolve("big.bin")), Qemu.sha256(dir.resolve("big.out")));
    Jqcowfs.Run ls = Jqcowfs.exec(List.of("debugfs", "-R", "ls /", partFile.toString()));
    assertTrue(!ls.out().contains("gone.txt"), "the deleted file is gone: " + ls.out());
  }

  @Test
  void mkfsExt4OnAFreshImage(@TempDir Path dir) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "fresh.qcow2", "64M");
    Path image = dir.resolve("fresh.qcow2");
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path ext4 = Files.createDirectory(dir.resolve("ext4"));
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--rw", image.toString())) {
      Jqcowfs.Run losetup =
          Jqcowfs.exec(List.of("losetup", "-f", "--show", m.file("fresh.raw").toString()));
      assertEquals(0, losetup.code(), losetup.err());
      String loop = losetup.out().trim();
      try {
        run("mkfs.ext4", "-q", "-F", loop);
        run("mount", "-t", "ext4", loop, ext4.toString());
        try {
          Files.writeString(ext4.resolve("note.txt"), "made by mkfs through jqcowfs\n");
        } finally {
          run("umount", ext4.toString());
        }
      } finally {
        run("losetup", "-d", loop);
      }
    }
    Qemu.Check check = Qemu.check(image);
    assertEquals(0, check.exitStatus(), "qemu-img check: " + check);
    Path raw = Qemu.convertRaw(image, dir.resolve("out.raw"), null);
    Jqcowfs.Run fsck = Jqcowfs.exec(List.of("e2fsck", "-fn", raw.toString()));
    assertEquals(0, fsck.code(), "e2fsck -fn: " + fsck.out() + fsck.err());
    assertEquals("made by mkfs through jqcowfs\n", debugfsCat(raw, "/note.txt"));
  }

  /**
   * An image on a block device (a loop device here, an LVM volume elsewhere) takes writes: whole
   * clusters, which a file would have reserved with {@code fallocate} (a block device answers
   * EOPNOTSUPP), and a partial one; {@code qemu-img compare} with a raw file written the same way.
   */
  @Test
  void anImageOnABlockDeviceTakesWrites(@TempDir Path dir) throws Exception {
    Path backingFile = dir.resolve("device.img");
    run("truncate", "-s", "80M", backingFile.toString());
    Jqcowfs.Run losetup = Jqcowfs.exec(List.of("losetup", "-f", "--show", backingFile.toString()));
    assertEquals(0, losetup.code(), losetup.err());
    Path device = Path.of(losetup.out().trim());
    try {
      Qemu.img(dir, "create", "-q", "-f", "qcow2", device.toString(), "64M");
      Path expected = dir.resolve("expected.raw");
      run("truncate", "-s", "64M", expected.toString());
      byte[] whole = new byte[3 << 20];
      new Random(5).nextBytes(whole);
      byte[] partial = new byte[4096];
      new Random(6).nextBytes(partial);
      Path mnt = Files.createDirectory(dir.resolve("mnt"));
      try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--rw", device.toString())) {
        for (Path target : List.of(m.file(device.getFileName() + ".raw"), expected)) {
          try (FileChannel ch = FileChannel.open(target, StandardOpenOption.WRITE)) {
            writeAt(ch, whole, 2 << 20);
            writeAt(ch, partial, (40 << 20) + 8192);
            ch.force(false);
          }
        }
      }
      Qemu.Check check = Qemu.check(device);
      assertEquals(0, check.exitStatus(), "qemu-img check: " + check);
      Qemu.Check same = Qemu.compare(expected, device);
      assertEquals(0, same.exitStatus(), "qemu-img compare: " + same);
    } finally {
      run("losetup", "-d", device.toString());
    }
  }

  private static Path extract(Path disk, Path out) throws Exception {
    long[] part = LoopDeviceIT.partition(disk);
    run(
        "dd",
        "if=" + disk,
        "of=" + out,
        "bs=512",
        "skip=" + part[0],
        "count=" + part[1],
        "status=none");
    return out;
  }

  private static String debugfsCat(Path fs, String file) throws Exception {
    Jqcowfs.Run r = Jqcowfs.exec(List.of("debugfs", "-R", "cat " + file, fs.toString()));
    assertEquals(0, r.code(), r.err());
    return r.out();
  }

  private static void run(String... cmd) throws Exception {
    Jqcowfs.Run r = Jqcowfs.exec(List.of(cmd));
    assertEquals(0, r.code(), String.join(" ", cmd) + ": " + r.err());
  }
}
