package org.jqcowfs.systemtests;

import static org.jqcowfs.systemtests.ChannelWrites.writeAt;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * kill -9 of a writable mount's daemon while a writer writes and calls fsync at random points,
 * again and again on the same overlay: after each kill, {@code qemu-img check} finds no corruption
 * (leaks allowed), every byte the writer had synced reads back through QEMU, and the next mount
 * works. SIGTERM in the middle of writes leaves a clean image (no leak) with every completed write.
 * {@code -Djqcowfs.crashCycles=N} sets the number of kills (100 here; more in {@code make soak}).
 */
class WriteCrashIT {
  private static final int CYCLES = Integer.getInteger("jqcowfs.crashCycles", 100);
  private static final long SIZE = 16L << 20;

  private record Op(long offset, byte[] data) {}

  @Test
  void killDuringWritesLosesNothingSynced(@TempDir Path dir) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "base.qcow2", Long.toString(SIZE));
    Qemu.io(dir, "base.qcow2", "write -q -P 0x5a 0 12M");
    Qemu.overlay(dir, "top.qcow2", "base.qcow2", "qcow2", null, null);
    Path top = dir.resolve("top.qcow2");
    Path durable = Qemu.convertRaw(top, dir.resolve("durable.raw"), null);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Random random = new Random(42);
    int leaks = 0;
    for (int cycle = 0; cycle < CYCLES; cycle++) {
      List<Op> unsynced = new ArrayList<>();
      Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--rw", top.toString());
      try (FileChannel ch =
              FileChannel.open(
                  m.file("top.raw"), StandardOpenOption.READ, StandardOpenOption.WRITE);
          FileChannel ref = FileChannel.open(durable, StandardOpenOption.WRITE)) {
        int ops = 1 + random.nextInt(12);
        for (int i = 0; i < ops; i++) {
          int length = 1 + random.nextInt(random.nextBoolean() ? 4096 : 300_000);
          long offset = (long) (random.nextDouble() * (SIZE - length));
          byte[] data = new byte[length];
          random.nextBytes(data);
          writeAt(ch, data, offset);
          unsynced.add(new Op(offset, data));
          if (random.nextInt(3) == 0) {
            ch.force(false);
            for (Op op : unsynced) {
              writeAt(ref, op.data(), op.offset()); // synced: must survive the kill
            }
            unsynced.clear();
          }
        }
      } finally {
        m.process.destroyForcibly(); // SIGKILL, at once after the last write
        m.process.waitFor(20, TimeUnit.SECONDS);
        m.close();
      }
      Qemu.Check check = Qemu.check(top);
      assertTrue(
          check.exitStatus() == 0 || check.exitStatus() == 3,
          "cycle " + cycle + ": qemu-img check: " + check);
      leaks += check.exitStatus() == 3 ? 1 : 0;
      Path got = Qemu.convertRaw(top, dir.resolve("got.raw"), null);
      byte[] want = Files.readAllBytes(durable);
      byte[] have = Files.readAllBytes(got);
      for (Op op : unsynced) { // written, not synced: old or new bytes may be there
        System.arraycopy(have, (int) op.offset(), want, (int) op.offset(), op.data().length);
      }
      int at = Arrays.mismatch(want, have);
      assertEquals(-1, at, "cycle " + cycle + ": a synced byte at " + at + " did not read back");
      Files.move(
          got, durable, StandardCopyOption.REPLACE_EXISTING); // what the next cycle starts on
    }
    System.out.printf(
        "write crash: %d kill -9 cycles, 0 corruptions, %d with leaks%n", CYCLES, leaks);
  }

  @Test
  void sigtermDuringWritesClosesTheImageClean(@TempDir Path dir) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "top.qcow2", Long.toString(SIZE));
    Path top = dir.resolve("top.qcow2");
    Path reference = Qemu.convertRaw(top, dir.resolve("ref.raw"), null);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--rw", top.toString());
    Random random = new Random(7);
    try (FileChannel ch =
            FileChannel.open(m.file("top.raw"), StandardOpenOption.READ, StandardOpenOption.WRITE);
        FileChannel ref = FileChannel.open(reference, StandardOpenOption.WRITE)) {
      for (int i = 0; i < 40; i++) {
        byte[] data = new byte[1 + random.nextInt(200_000)];
        random.nextBytes(data);
        long offset = (long) (random.nextDouble() * (SIZE - data.length));
        writeAt(ch, data, offset);
        writeAt(ref, data, offset);
      }
    } finally {
      m.process.destroy(); // SIGTERM: unmount, flush, close clean
      assertTrue(m.process.waitFor(60, TimeUnit.SECONDS), "the daemon exits on SIGTERM");
      m.close();
    }
    assertEquals(0, m.process.exitValue() == 143 ? 0 : m.process.exitValue(), "exit status");
    Qemu.Check check = Qemu.check(top);
    assertEquals(0, check.exitStatus(), "clean, no leaks: " + check);
    Qemu.Check compare = Qemu.compare(top, reference);
    assertEquals(0, compare.exitStatus(), "every completed write: " + compare);
  }
}
