package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.jqcowfs.image.Image;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.Qcow2WriteTest.Case;
import org.jqcowfs.qcow2.testing.Poke;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Persistent dirty bitmaps kept through writes, QEMU the oracle for every bit: the same writes,
 * write-zeroes, discards and punched holes made through {@link Qcow2Image} on one copy and by
 * qemu-io on another; then each bitmap as {@code qemu-nbd -B} exports it must be the same on both,
 * the disabled one unchanged, {@code qemu-img check} clean (no leak) and {@code qemu-img info}
 * without a warning.
 */
class BitmapWriteTest {
  @TempDir Path dir;

  /** Name and granularity in bytes of the enabled bitmaps; "off" is disabled. */
  private static final String[][] ENABLED = {
    {"g512", "512"}, {"g64k", "65536"}, {"g4m", "4194304"}, {"g16m", "16777216"}
  };

  private static final List<String> NAMES = List.of("g512", "g64k", "g4m", "g16m", "off");

  /** Adds the bitmaps to {@code image}, each with some dirty bits already; "off" then disabled. */
  static void addBitmaps(Path dir, Path image) throws IOException {
    for (String[] b : ENABLED) {
      Qemu.img(dir, "bitmap", "--add", "-g", b[1], image.toString(), b[0]);
    }
    Qemu.img(dir, "bitmap", "--add", "-g", "65536", image.toString(), "off");
    Qemu.io(dir, image.toString(), "write -q -P 0x5a 5M 100k", "write -q -z 30001000 3000");
    Qemu.img(dir, "bitmap", "--disable", image.toString(), "off");
  }

  @ParameterizedTest
  @EnumSource(
      value = Case.class,
      names = {"V2", "V2_BACKING"},
      mode = EnumSource.Mode.EXCLUDE) // QEMU keeps bitmaps in v3 images only
  void dirtyBitsAreWhatQemuSets(Case c) throws Exception {
    Path base = Qcow2WriteTest.prepare(dir, c);
    addBitmaps(dir, base);
    Path ours = Files.copy(base, dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(base, dir.resolve("theirs.qcow2"));
    List<long[]> offBefore = Qemu.dirtyBitmap(base, "off");
    Random random = new Random(c.ordinal() * 4099L + 3);
    List<String> commands = new ArrayList<>();
    for (int session = 0; session < 2; session++) {
      try (Qcow2Image image = Qcow2WriteTest.openWritable(ours);
          Image backing = Qcow2WriteTest.openBacking(dir, c)) {
        image.setBacking(backing);
        String info = Qemu.img(dir, "info", "-U", "--output=json", ours.toString());
        assertTrue(info.contains("\"in-use\""), c + ": in use while open: " + info);
        for (int op = 0; op < 12; op++) {
          commands.add(randomOp(image, random, op));
        }
      }
    }
    Qemu.io(dir, theirs.toString(), commands.toArray(String[]::new));
    for (String name : NAMES) {
      List<long[]> want = Qemu.dirtyBitmap(theirs, name);
      List<long[]> got = Qemu.dirtyBitmap(ours, name);
      assertEquals(
          Qemu.dirtyRuns(want), Qemu.dirtyRuns(got), c + ": bitmap " + name + "; ops " + commands);
    }
    assertEquals(Qemu.dirtyRuns(offBefore), Qemu.dirtyRuns(Qemu.dirtyBitmap(ours, "off")));
    assertTrue(Qemu.dirtyRuns(Qemu.dirtyBitmap(ours, "g512")).length() > 20, "some bits set");
    Qemu.Check check = Qemu.check(ours);
    assertEquals(0, check.exitStatus(), c + ": qemu-img check: " + check);
    Qemu.Check info = Qemu.anyExit(dir, 60, "qemu-img", "info", ours.toString());
    assertEquals("", info.stderr(), c + ": qemu-img info warns");
    assertTrue(!info.json().contains("in-use"), c + ": " + info.json());
  }

  /** One random write, write-zeroes, discard or punched hole; returns qemu-io's command for it. */
  private static String randomOp(Qcow2Image image, Random random, int op) throws IOException {
    long length = Qcow2WriteTest.randomLength(random);
    long offset = Qcow2WriteTest.randomOffset(random, length);
    switch (random.nextInt(6)) {
      case 0 -> {
        image.writeZeroes(offset, length, false);
        return "write -q -z " + offset + " " + length;
      }
      case 1 -> {
        image.punchHole(offset, length);
        return "write -q -z -u " + offset + " " + length;
      }
      case 2 -> {
        image.discard(offset, length);
        return "discard -q " + offset + " " + length;
      }
      default -> {
        int pattern = 1 + op % 254;
        ByteBuffer data = ByteBuffer.allocate((int) length);
        Arrays.fill(data.array(), (byte) pattern);
        image.write(data, offset);
        return "write -q -P " + pattern + " " + offset + " " + length;
      }
    }
  }

  /**
   * A bitmap found in use at a writable open is left as it is (inconsistent, as QEMU leaves it);
   * the others are kept; nothing is written when nothing is.
   */
  @Test
  void anInUseBitmapIsLeftInconsistent() throws Exception {
    Path image = dir.resolve("d.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", image.toString(), "48M");
    addBitmaps(dir, image);
    new Poke(image).orBitmapFlags(0, 1); // g512 in use
    try (Qcow2Image w = Qcow2WriteTest.openWritable(image)) {
      w.write(ByteBuffer.wrap(new byte[4096]), 8L << 20);
    }
    String info = Qemu.img(dir, "info", "--output=json", image.toString());
    assertTrue(info.contains("\"in-use\""), info);
    assertThrows(IOException.class, () -> Qemu.dirtyBitmap(image, "g512"));
    assertTrue(Qemu.dirtyRuns(Qemu.dirtyBitmap(image, "g64k")).contains("8388608+65536"));
    Qemu.Check check = Qemu.check(image);
    assertEquals(0, check.exitStatus(), "qemu-img check: " + check);
  }

  /**
   * A bitmap whose table names a cluster that is another's (here the L1 table) is refused at a
   * writable open, naming the bitmap; the image still opens read-only and is left unchanged.
   */
  @Test
  void aBitmapOnOtherMetadataRefusesWritesOnly() throws Exception {
    Path image = dir.resolve("d.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", image.toString(), "48M");
    addBitmaps(dir, image);
    Poke poke = new Poke(image);
    long table = poke.word(poke.bitmapEntry(1)); // g64k's table
    poke.putWord(table, poke.word(40)); // its first entry: the L1 table's cluster
    byte[] before = Files.readAllBytes(image);
    ImageFormatException e =
        assertThrows(ImageFormatException.class, () -> Qcow2WriteTest.openWritable(image).close());
    assertTrue(e.getMessage().contains("bitmap 'g64k'"), e.getMessage());
    assertTrue(Arrays.equals(before, Files.readAllBytes(image)), "the image is unchanged");
    try (Qcow2Image r = Qcow2Image.open(image)) {
      assertEquals(5, r.bitmaps().size());
    }
  }

  /** A damaged bitmap: what is poked into an image with bitmaps b0 (64 KiB) and b1 (512 B). */
  enum Damage {
    GRANULARITY_BITS_8("doesn't satisfy the constraints"),
    RESERVED_FLAG("doesn't satisfy the constraints"),
    TYPE_2("doesn't satisfy the constraints"),
    TABLE_OFFSET_UNALIGNED("doesn't satisfy the constraints"),
    NAME_BYTES_PAST_DIRECTORY("Broken bitmap directory"),
    TABLE_ENTRY_RESERVED_BITS("bitmap 'b0': table entry 0 is invalid"),
    TABLE_ENTRY_PAST_EOF("bitmap 'b0': table entry 0 at 0x10000000 passes the end"),
    TABLE_ENTRY_ON_L1_TABLE("overlaps the active L1 table"),
    TABLE_ON_REFCOUNT_TABLE("overlaps the refcount table"),
    DATA_CLUSTER_SHARED("has refcount 2, not 1");

    final String message;

    Damage(String message) {
      this.message = message;
    }
  }

  /**
   * A hostile bitmap directory or table refuses the writable open with a message naming what is
   * wrong, before anything is written; the image still opens read-only and reads as QEMU read it
   * before the damage. (QEMU refuses to open the first seven at all; it opens the last three.)
   */
  @ParameterizedTest
  @EnumSource(Damage.class)
  void aHostileBitmapRefusesTheWritableOpenOnly(Damage d) throws Exception {
    Path image = dir.resolve("h.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", image.toString(), "8M");
    Qemu.io(dir, image.toString(), "write -q -P 1 0 64k");
    Qemu.img(dir, "bitmap", "--add", image.toString(), "b0");
    Qemu.img(dir, "bitmap", "--add", "-g", "512", image.toString(), "b1");
    Qemu.io(dir, image.toString(), "write -q -P 2 4M 64k", "write -q -P 3 0 4k");
    Path raw = Qemu.convertRaw(image, dir.resolve("before.raw"), null);
    Poke p = new Poke(image);
    long entry = p.bitmapEntry(0);
    long table = p.word(entry);
    switch (d) {
      case GRANULARITY_BITS_8 ->
          p.putWord(entry + 16, (p.word(entry + 16) & ~(0xffL << 48)) | 8L << 48);
      case RESERVED_FLAG -> p.orBitmapFlags(0, 4);
      case TYPE_2 -> p.putWord(entry + 16, (p.word(entry + 16) & ~(0xffL << 56)) | 2L << 56);
      case TABLE_OFFSET_UNALIGNED -> p.putWord(entry, table + 8);
      case NAME_BYTES_PAST_DIRECTORY -> p.putWord(entry + 16, p.word(entry + 16) | 0xffffL << 32);
      case TABLE_ENTRY_RESERVED_BITS -> p.putWord(table, 0x0100000000000200L);
      case TABLE_ENTRY_PAST_EOF -> p.putWord(table, 0x10000000L);
      case TABLE_ENTRY_ON_L1_TABLE -> p.putWord(table, p.word(40));
      case TABLE_ON_REFCOUNT_TABLE -> p.putWord(entry, p.word(48));
      case DATA_CLUSTER_SHARED -> {
        long data = p.word(p.word(p.bitmapEntry(0)));
        p.putWord(p.word(p.bitmapEntry(1)), data); // b1's first entry names it too
        long refblock = p.word(p.word(48));
        long at = refblock + 2 * (data / 4096);
        ByteBuffer two = ByteBuffer.allocate(8).putLong(0, p.word(at & ~7L));
        two.putShort((int) (at & 7), (short) 2);
        p.putWord(at & ~7L, two.getLong(0));
      }
    }
    byte[] before = Files.readAllBytes(image);
    ImageFormatException e =
        assertThrows(ImageFormatException.class, () -> Qcow2WriteTest.openWritable(image).close());
    assertTrue(e.getMessage().contains(d.message), d + ": " + e.getMessage());
    assertTrue(e.getMessage().contains(image.toString()), "names the file: " + e.getMessage());
    assertTrue(Arrays.equals(before, Files.readAllBytes(image)), d + ": the image is unchanged");
    try (Qcow2Image r = Qcow2Image.open(image)) {
      ByteBuffer got = ByteBuffer.allocate((int) r.size());
      r.read(got, 0);
      assertTrue(Arrays.equals(Files.readAllBytes(raw), got.array()), d + ": reads as before");
    }
  }
}
