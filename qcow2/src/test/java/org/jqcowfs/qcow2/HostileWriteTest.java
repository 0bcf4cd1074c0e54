package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.testing.Poke;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Hostile images opened for writing: metadata that would make a write land on other metadata is
 * refused with an error naming the overlap and the image is marked corrupt (QEMU {@code
 * qcow2_pre_write_overlap_check}); a damaged refcount table fails the write with its entry named.
 * In every case no byte of the file changes but the corrupt bit, and reads keep working. A refcount
 * at its maximum never wraps.
 */
class HostileWriteTest {
  @TempDir Path dir;

  enum Case {
    L2_ENTRY_ON_ITS_L2_TABLE("an L2 table"),
    L2_ENTRY_ON_L1("the active L1 table"),
    L2_ENTRY_ON_REFCOUNT_TABLE("the refcount table"),
    L2_ENTRY_ON_REFCOUNT_BLOCK("a refcount block"),
    L1_ENTRY_ON_REFCOUNT_TABLE("the refcount table"),
    REFCOUNT_TABLE_ENTRY_PAST_END("refcount table entry 0"),
    REFCOUNT_BLOCK_UNALIGNED("refcount table entry 0");

    final String named;

    Case(String named) {
      this.named = named;
    }
  }

  /**
   * A data cluster shared with a snapshot whose refcount is at its maximum (65535 for 16-bit
   * refcounts): the write copies it into a new cluster and drops one count, never adding one, so
   * the count cannot wrap; QEMU's check then sees a leak, no corruption, and the snapshot reads as
   * before.
   */
  @org.junit.jupiter.api.Test
  void aRefcountAtItsMaximumNeverWraps() throws Exception {
    Path image = dir.resolve("m.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "m.qcow2", "64M");
    Qemu.io(dir, "m.qcow2", "write -q -P 7 0 64k");
    Qemu.img(dir, "snapshot", "-c", "s", "m.qcow2");
    Poke p = new Poke(image);
    p.setRefcount16(p.dataCluster(0), 0xffff);
    Path snap = Qemu.convertRaw(image, dir.resolve("before.raw"), "s");
    String before = Qemu.sha256(snap);
    try (Qcow2Image w =
        Qcow2Image.open(
            image, new Qcow2Options(-1, null, null, HostFileOptions.DEFAULT.withWritable(true)))) {
      w.write(ByteBuffer.wrap(new byte[] {1, 2, 3}), 100);
    }
    Qemu.Check check = Qemu.check(image);
    assertEquals(3, check.exitStatus(), "a leak, no corruption: " + check);
    Files.delete(snap);
    assertEquals(before, Qemu.sha256(Qemu.convertRaw(image, snap, "s")), "the snapshot");
  }

  @ParameterizedTest
  @EnumSource(Case.class)
  void refusedWithoutTouchingMetadata(Case c) throws Exception {
    Path image = dir.resolve("h.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "h.qcow2", "64M");
    Qemu.io(dir, "h.qcow2", "write -q -P 7 0 64k", "write -q -P 8 1M 64k");
    Poke p = new Poke(image);
    long l1Offset = p.word(40);
    long reftable = p.word(48);
    long refblock = p.word(reftable);
    long target =
        switch (c) {
          case L2_ENTRY_ON_ITS_L2_TABLE -> p.l1(0) & 0x00fffffffffffe00L;
          case L2_ENTRY_ON_L1 -> l1Offset;
          case L2_ENTRY_ON_REFCOUNT_TABLE, L1_ENTRY_ON_REFCOUNT_TABLE -> reftable;
          default -> refblock;
        };
    long guest = 0;
    switch (c) {
      case L1_ENTRY_ON_REFCOUNT_TABLE -> p.setL1(0, target | (1L << 63));
      case REFCOUNT_TABLE_ENTRY_PAST_END -> p.putWord(reftable, 1L << 40);
      case REFCOUNT_BLOCK_UNALIGNED -> p.putWord(reftable, refblock + 4096);
      default -> p.putWord(p.l2EntryOffset(guest), target | (1L << 63));
    }
    if (c.name().startsWith("REFCOUNT")) {
      guest = 8L << 20; // unallocated: the write allocates
    }
    byte[] before = Files.readAllBytes(image);
    long expectBit = c.name().startsWith("REFCOUNT") ? 0 : Header.INCOMPAT_CORRUPT;
    try (Qcow2Image w =
        Qcow2Image.open(
            image, new Qcow2Options(-1, null, null, HostFileOptions.DEFAULT.withWritable(true)))) {
      ByteBuffer data = ByteBuffer.allocate(4096);
      Arrays.fill(data.array(), (byte) 0x55);
      long at = guest;
      IOException e = assertThrows(IOException.class, () -> w.write(data, at));
      assertTrue(e.getMessage().contains(c.named), c + ": " + e.getMessage());
      assertTrue(e.getMessage().contains(image.toString()), "names the file: " + e.getMessage());
      if (c != Case.L1_ENTRY_ON_REFCOUNT_TABLE) { // else the read of L1[0]'s range is hostile too
        ByteBuffer read = ByteBuffer.allocate(4096);
        w.read(read, 1L << 20);
        assertEquals(8, read.get(0), "reads keep working");
      }
    }
    byte[] after = Files.readAllBytes(image);
    long incompatible = ByteBuffer.wrap(after).getLong(Header.OFF_INCOMPATIBLE_FEATURES);
    assertEquals(expectBit, incompatible & Header.INCOMPAT_CORRUPT, c + ": the corrupt bit");
    ByteBuffer.wrap(after).putLong(Header.OFF_INCOMPATIBLE_FEATURES, 0);
    ByteBuffer.wrap(before).putLong(Header.OFF_INCOMPATIBLE_FEATURES, 0);
    assertEquals(before.length, after.length, c + ": the file's length");
    assertArrayEquals(before, after, c + ": no byte of the file changed");
  }
}
