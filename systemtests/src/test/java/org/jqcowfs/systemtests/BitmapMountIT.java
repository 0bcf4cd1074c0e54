package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Persistent dirty bitmaps through {@code jqcowfs mount --rw}: seeded O_DIRECT writes (so that each
 * reaches the daemon as written, not as the page cache writes it back), punched holes and zero
 * ranges on the flat file; the same changes made by qemu-io to a copy. While mounted {@code
 * qemu-img info -U} shows the enabled bitmaps in use; after the daemon ends (unmount, or SIGTERM)
 * each bitmap as {@code qemu-nbd -B} exports it equals QEMU's copy, the disabled one is unchanged,
 * {@code qemu-img check} finds no leak and {@code qemu-img info} no warning.
 */
class BitmapMountIT {
  private static final long SIZE = 64L << 20;
  private static final List<String> NAMES = List.of("g512", "g64k", "g16m", "off");

  @ParameterizedTest
  @ValueSource(strings = {"unmount", "SIGTERM"})
  void bitmapsKeepEveryChange(String end, @TempDir Path dir) throws Exception {
    Path image = dir.resolve("disk.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", image.toString(), "64M");
    Qemu.io(dir, image.toString(), "write -q -P 0x11 0 8M");
    Qemu.img(dir, "bitmap", "--add", "-g", "512", image.toString(), "g512");
    Qemu.img(dir, "bitmap", "--add", image.toString(), "g64k");
    Qemu.img(dir, "bitmap", "--add", "-g", "16M", image.toString(), "g16m");
    Qemu.img(dir, "bitmap", "--add", image.toString(), "off");
    Qemu.io(dir, image.toString(), "write -q -P 0x22 20M 300k");
    Qemu.img(dir, "bitmap", "--disable", image.toString(), "off");
    Path theirs = Files.copy(image, dir.resolve("theirs.qcow2"));
    List<long[]> offBefore = Qemu.dirtyBitmap(image, "off");
    List<String> commands = new ArrayList<>();
    Random random = new Random(end.hashCode());
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--rw", image.toString());
    try {
      Path flat = m.file("disk.raw");
      for (int op = 0; op < 30; op++) {
        long offset = (long) (random.nextDouble() * (SIZE - (3 << 20)));
        long length = 1 + random.nextInt(random.nextBoolean() ? 20000 : 3 << 20);
        switch (random.nextInt(4)) {
          case 0 -> {
            exec("fallocate", "-p", "-o", "" + offset, "-l", "" + length, flat.toString());
            commands.add("write -q -z -u " + offset + " " + length);
          }
          case 1 -> {
            exec("fallocate", "-z", "-o", "" + offset, "-l", "" + length, flat.toString());
            commands.add("write -q -z " + offset + " " + length);
          }
          default -> {
            long at = offset & ~4095L;
            long blocks = 1 + length / 4096 % 256;
            exec(
                "dd",
                "if=/dev/urandom",
                "of=" + flat,
                "bs=4096",
                "count=" + blocks,
                "seek=" + at / 4096,
                "oflag=direct",
                "conv=notrunc",
                "status=none");
            commands.add("write -q -P 7 " + at + " " + blocks * 4096);
          }
        }
      }
      String info = Qemu.img(dir, "info", "-U", "--output=json", image.toString());
      assertEquals(3, count(info, "\"in-use\""), "the enabled bitmaps are in use: " + info);
      if (end.equals("SIGTERM")) {
        m.process.destroy(); // SIGTERM to the daemon in the foreground
        assertTrue(m.process.waitFor(30, TimeUnit.SECONDS), "the daemon ends on SIGTERM");
      }
    } finally {
      m.close();
    }
    Qemu.io(dir, theirs.toString(), commands.toArray(String[]::new));
    for (String name : NAMES) {
      assertEquals(
          Qemu.dirtyRuns(Qemu.dirtyBitmap(theirs, name)),
          Qemu.dirtyRuns(Qemu.dirtyBitmap(image, name)),
          end + ": bitmap " + name + "; ops " + commands);
    }
    assertEquals(Qemu.dirtyRuns(offBefore), Qemu.dirtyRuns(Qemu.dirtyBitmap(image, "off")));
    Qemu.Check check = Qemu.check(image);
    assertEquals(0, check.exitStatus(), end + ": qemu-img check: " + check);
    Qemu.Check info = Qemu.anyExit(dir, 60, "qemu-img", "info", image.toString());
    assertEquals("", info.stderr(), end + ": qemu-img info warns");
    assertFalse(info.json().contains("in-use"), info.json());
  }

  private static void exec(String... cmd) throws Exception {
    Jqcowfs.Run r = Jqcowfs.exec(List.of(cmd));
    assertEquals(0, r.code(), List.of(cmd) + ": " + r.err());
  }

  private static int count(String s, String what) {
    int n = 0;
    for (int i = s.indexOf(what); i >= 0; i = s.indexOf(what, i + 1)) {
      n++;
    }
    return n;
  }
}
