package org.jqcowfs.systemtests;

import static org.jqcowfs.systemtests.ChannelWrites.writeAt;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
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
 * A writable mount whose image lives on a full host file system (an 8 MiB tmpfs): the writer gets
 * ENOSPC for the write that does not fit, what it wrote and synced before still reads back, and
 * after the unmount {@code qemu-img check} finds no corruption.
 */
class HostFullIT {
  @Test
  void enospcReachesTheWriterAndTheImageStaysConsistent(@TempDir Path dir) throws Exception {
    Path small = Files.createDirectory(dir.resolve("small"));
    run("mount", "-t", "tmpfs", "-o", "size=8M", "tmpfs", small.toString());
    try {
      Qemu.img(small, "create", "-q", "-f", "qcow2", "img.qcow2", "64M");
      Path image = small.resolve("img.qcow2");
      Path mnt = Files.createDirectory(dir.resolve("mnt"));
      byte[] first = new byte[2 << 20];
      new Random(1).nextBytes(first);
      String failure = null;
      try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--rw", image.toString());
          FileChannel ch =
              FileChannel.open(
                  m.file("img.raw"), StandardOpenOption.READ, StandardOpenOption.WRITE)) {
        writeAt(ch, first, 0);
        ch.force(false);
        byte[] more = new byte[1 << 20];
        for (int i = 2; i < 40 && failure == null; i++) {
          new Random(i).nextBytes(more);
          try {
            writeAt(ch, more, i * (1L << 20));
            ch.force(false);
          } catch (IOException e) {
            failure = e.getMessage();
          }
        }
        ByteBuffer back = ByteBuffer.allocate(first.length);
        while (back.hasRemaining() && ch.read(back, back.position()) > 0) {}
        assertEquals(ByteBuffer.wrap(first), back.flip(), "synced data still reads back");
      }
      assertTrue(failure != null && failure.contains("No space left"), "ENOSPC: " + failure);
      Qemu.Check check = Qemu.check(image);
      assertTrue(check.exitStatus() == 0 || check.exitStatus() == 3, "no corruption: " + check);
    } finally {
      run("umount", small.toString());
    }
  }

  private static void run(String... cmd) throws Exception {
    Jqcowfs.Run r = Jqcowfs.exec(List.of(cmd));
    assertEquals(0, r.code(), String.join(" ", cmd) + ": " + r.err());
  }
}
