package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Locks compatible with QEMU's (file-posix OFD byte locks): an image that a QEMU process writes is
 * refused unless {@code --force-share}; while mounted, QEMU cannot open the image, or a backing
 * file of it, for writing, but can still read it; after the unmount it can write again.
 */
class LockIT {
  /** An overlay (a.qcow2) on a base (base.qcow2), both with data. */
  private static Path chain(Path dir) throws IOException {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "base.qcow2", "64M");
    Qemu.io(dir, "base.qcow2", "write -q -P 7 0 1M");
    Qemu.img(
        dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "a.qcow2", "64M");
    Qemu.io(dir, "a.qcow2", "write -q -P 9 4M 1M");
    return dir.resolve("a.qcow2");
  }

  /** qemu-io with the image open read-write, waiting on its stdin until destroyed. */
  private static Process qemuIoWriter(Path image) throws IOException, InterruptedException {
    Process p =
        new ProcessBuilder("qemu-io", "-f", "qcow2", image.toString())
            .redirectErrorStream(true)
            .start();
    // qemu-io takes its locks while opening: wait for its write lock (byte 101) on this inode.
    // /proc/locks lines end "MAJ:MIN:INODE START END"; neighbouring bytes merge ("100 101").
    java.util.regex.Pattern lock =
        java.util.regex.Pattern.compile(
            ":" + Files.getAttribute(image, "unix:ino") + " (100|101) 10[1-3]$",
            java.util.regex.Pattern.MULTILINE);
    long deadline = System.nanoTime() + 10_000_000_000L;
    while (!lock.matcher(Files.readString(Path.of("/proc/locks"))).find()) {
      assertTrue(p.isAlive() && System.nanoTime() < deadline, "qemu-io did not start");
      Thread.sleep(20);
    }
    return p;
  }

  @Test
  void imageWrittenByQemuIsRefusedUnlessForceShare(@TempDir Path dir) throws Exception {
    Path image = chain(dir);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Process writer = qemuIoWriter(image);
    try {
      Jqcowfs.Run r = Jqcowfs.run("mount", image.toString(), mnt.toString());
      assertNotEquals(0, r.code(), "mount of an image open for writing must fail");
      assertTrue(r.err().contains("a.qcow2"), r.err());
      assertTrue(r.err().contains("failed to get shared \"write\" lock"), r.err());
      assertTrue(r.err().contains("--force-share"), r.err());
      assertFalse(Jqcowfs.mounted(mnt));

      Path reference = dir.resolve("ref.raw");
      Qemu.run(dir, "qemu-img", "convert", "-U", "-O", "raw", image.toString(), "ref.raw");
      try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--force-share", image.toString())) {
        assertEquals(Qemu.sha256(reference), Qemu.sha256(m.file("a.raw")));
      }
    } finally {
      writer.destroy();
      writer.waitFor(10, TimeUnit.SECONDS);
      if (Jqcowfs.mounted(mnt)) { // the refused mount came up after all: do not leave it
        Jqcowfs.run("unmount", "--lazy", mnt.toString());
      }
    }
  }

  @Test
  void mountedImageCannotBeOpenedForWriting(@TempDir Path dir) throws Exception {
    Path image = chain(dir);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString())) {
      for (String name : List.of("a.qcow2", "base.qcow2")) {
        Jqcowfs.Run w =
            Jqcowfs.exec(List.of("qemu-io", "-c", "write 0 4k", dir.resolve(name).toString()));
        assertTrue(
            w.out().contains("Failed to get \"write\" lock")
                || w.err().contains("Failed to get \"write\" lock"),
            name + ": qemu-io must not get the write lock: " + w);
      }
      // Readers share: qemu-img info (a read-only open without -U) still works.
      Jqcowfs.Run info = Jqcowfs.exec(List.of("qemu-img", "info", image.toString()));
      assertEquals(0, info.code(), info.err());
      assertTrue(Files.size(m.file("a.raw")) > 0);
    }
    Jqcowfs.Run w = Jqcowfs.exec(List.of("qemu-io", "-c", "write -P 5 0 4k", image.toString()));
    assertEquals(0, w.code(), "after the unmount qemu-io writes again: " + w);
    assertTrue(w.out().contains("wrote 4096/4096"), w.out());
  }
}
