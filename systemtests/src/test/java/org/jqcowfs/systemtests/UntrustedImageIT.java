package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Untrusted images through real mounts and the real launcher: a single bad pointer leaves the rest
 * of the disk readable (EIO for its range only, READ and LSEEK), {@code convert --salvage} writes
 * zeros there; a backing name that leads out of the image's tree is refused by mount and convert,
 * and no output holds the host file's bytes; the flat file is no more readable than the image.
 */
class UntrustedImageIT {
  static final int L1_OFFSET = 40;
  static final long OFFSET_MASK = 0x00fffffffffffe00L;

  /** One kind of single bad pointer: the image it pokes and how. */
  record Damage(String name, String image, Poke poke, boolean blockStatusSeesIt) {
    @Override
    public String toString() {
      return name;
    }
  }

  @FunctionalInterface
  interface Poke {
    void apply(Path image) throws IOException;
  }

  static long peekLong(Path f, long off) throws IOException {
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "r")) {
      raf.seek(off);
      return raf.readLong();
    }
  }

  static void pokeLong(Path f, long off, long v) throws IOException {
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
      raf.seek(off);
      raf.writeLong(v);
    }
  }

  static long l1Pos(Path f, int index) throws IOException {
    return peekLong(f, L1_OFFSET) + 8L * index;
  }

  /**
   * Host offset of L2 entry {@code l2Index} of L1 entry {@code l1Index} ({@code entryBytes} each).
   */
  static long l2Pos(Path f, int l1Index, int l2Index, int entryBytes) throws IOException {
    return (peekLong(f, l1Pos(f, l1Index)) & OFFSET_MASK) + (long) entryBytes * l2Index;
  }

  /** Sets bits of the 8-byte word at {@code pos}. */
  static void orLong(Path f, long pos, long bits) throws IOException {
    pokeLong(f, pos, peekLong(f, pos) | bits);
  }

  static List<Damage> damages() {
    // 4 KiB clusters: an L1 entry maps 2 MiB, L1[1] is [2M, 4M); L2[5] of L1[0] is [20K, 24K).
    return List.of(
        new Damage("L1 entry past EOF", "plain", f -> pokeLong(f, l1Pos(f, 1), 1L << 40), true),
        new Damage(
            "L1 entry unaligned",
            "plain",
            f -> pokeLong(f, l1Pos(f, 1), (peekLong(f, l1Pos(f, 1)) & OFFSET_MASK) + 512),
            true),
        new Damage("L1 entry reserved bits", "plain", f -> orLong(f, l1Pos(f, 1), 1L << 60), true),
        new Damage("L2 entry reserved bits", "plain", f -> orLong(f, l2Pos(f, 0, 5, 8), 2), true),
        new Damage(
            "L2 entry past EOF",
            "plain",
            f -> pokeLong(f, l2Pos(f, 0, 5, 8), (1L << 63) | (1L << 40)),
            true),
        new Damage(
            "L2 entry unaligned",
            "plain",
            f -> pokeLong(f, l2Pos(f, 0, 5, 8), peekLong(f, l2Pos(f, 0, 5, 8)) + 512),
            true),
        new Damage(
            "L2 host offset at 2^56",
            "plain",
            f -> pokeLong(f, l2Pos(f, 0, 5, 8), (1L << 63) | (1L << 56)),
            true),
        new Damage("v2 image with a zero flag", "v2", f -> orLong(f, l2Pos(f, 0, 5, 8), 1), true),
        new Damage(
            "compressed descriptor past EOF",
            "compressed",
            f -> pokeLong(f, l2Pos(f, 0, 5, 8), (1L << 62) | (1L << 40)),
            true),
        new Damage(
            "compressed payload garbage",
            "compressed",
            f -> {
              long d = peekLong(f, l2Pos(f, 0, 5, 8)) & ((1L << 50) - 1);
              pokeLong(f, d, -1L);
            },
            false),
        new Damage(
            "extended L2 subcluster both allocated and zero",
            "extl2",
            f -> orLong(f, l2Pos(f, 0, 1, 16) + 8, 1L << 32),
            true));
  }

  /** An 8 MiB disk, a pattern per MiB, 6-7 MiB never written, in the named kind of image. */
  static Path build(Path dir, String kind) throws IOException {
    String opts =
        switch (kind) {
          case "v2" -> "cluster_size=4096,compat=0.10";
          case "extl2" -> "cluster_size=65536,extended_l2=on";
          default -> "cluster_size=4096";
        };
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", opts, "d.qcow2", "8M");
    List<String> writes = new ArrayList<>();
    for (int mib = 0; mib < 8; mib++) {
      if (mib != 6) {
        writes.add("write -q -P " + (0x11 * (mib + 1)) + " " + mib + "M 1M");
      }
    }
    Qemu.io(dir, "d.qcow2", writes.toArray(String[]::new));
    if (!kind.equals("compressed")) {
      return dir.resolve("d.qcow2");
    }
    Qemu.img(
        dir, "convert", "-q", "-c", "-O", "qcow2", "-o", "cluster_size=4096", "d.qcow2", "c.qcow2");
    return dir.resolve("c.qcow2");
  }

  static final Pattern RANGE = Pattern.compile("guest range \\[0x([0-9a-f]+), \\+0x([0-9a-f]+)\\)");

  @ParameterizedTest(name = "{0}")
  @MethodSource("damages")
  void aSingleBadPointerSpoilsOnlyItsRange(Damage damage, @TempDir Path dir) throws Exception {
    Path image = build(dir, damage.image());
    byte[] reference = Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("ref.raw"), null));
    damage.poke().apply(image);

    // convert without --salvage fails naming the range; with it, zeros there and the rest right
    Jqcowfs.Run failed = Jqcowfs.run("convert", image.toString(), dir.resolve("x.raw").toString());
    assertEquals(1, failed.code(), failed.err());
    assertTrue(failed.err().contains("--salvage"), failed.err());
    Path salvaged = dir.resolve("salvaged.raw");
    Jqcowfs.Run run = Jqcowfs.run("convert", "--salvage", image.toString(), salvaged.toString());
    assertEquals(1, run.code(), "salvage reports damage with status 1: " + run.err());
    Matcher m = RANGE.matcher(run.err());
    assertTrue(m.find(), "the damaged range is listed: " + run.err());
    long start = Long.parseLong(m.group(1), 16);
    long length = Long.parseLong(m.group(2), 16);
    assertFalse(m.find(), "one damaged range: " + run.err());
    assertTrue(length > 0 && start + length <= reference.length);
    byte[] want = reference.clone();
    Arrays.fill(want, (int) start, (int) (start + length), (byte) 0);
    assertArrayEquals(want, Files.readAllBytes(salvaged), "salvaged = reference, range zeroed");
    assertTrue(!Arrays.equals(reference, want), "the damaged range held data: the test can fail");

    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    try (Jqcowfs.Mount mount = Jqcowfs.Mount.of(mnt, image.toString())) {
      Path flat =
          mount.file("d.raw".equals(image.getFileName().toString()) ? "d.raw" : rawName(image));
      assertEquals(reference.length, Files.size(flat));
      if (damage.blockStatusSeesIt()) { // a bad payload is found by the read that decompresses it
        // the background data count (st_blocks) meets it and logs it
        long deadline = System.nanoTime() + 20_000_000_000L;
        while (!mount.log().contains("give EIO") && System.nanoTime() < deadline) {
          Thread.sleep(50);
        }
        assertTrue(mount.log().contains("L1["), "the damage is logged: " + mount.log());
      }
      try (FileChannel ch = FileChannel.open(flat, StandardOpenOption.READ)) {
        IOException eio =
            assertThrows(IOException.class, () -> ch.read(ByteBuffer.allocate(4096), start));
        assertTrue(eio.getMessage().contains("Input/output error"), eio.getMessage());
        // the rest, a page at a time, equals QEMU's view of the undamaged image
        ByteBuffer page = ByteBuffer.allocate(4096);
        for (long pos = 0; pos < reference.length; pos += 4096) {
          if (pos >= start && pos < start + length) {
            continue;
          }
          page.clear();
          while (page.hasRemaining() && ch.read(page, pos + page.position()) > 0) {}
          assertArrayEquals(
              Arrays.copyOfRange(reference, (int) pos, (int) pos + 4096),
              page.array(),
              "page at " + pos);
        }
      }
      try (PosixStorage f = PosixStorage.open(flat, HostFileOptions.DEFAULT)) {
        if (damage.blockStatusSeesIt()) {
          assertThrows(IOException.class, () -> f.seekData(start), "SEEK_DATA in the range");
          assertThrows(IOException.class, () -> f.seekHole(start), "SEEK_HOLE in the range");
        }
        long after = start + length;
        if (after < reference.length) {
          assertNotEquals(-2, f.seekData(after), "SEEK_DATA after the range works");
        }
        assertEquals(0, f.seekData(0), "SEEK_DATA at 0 works");
      }
    }
  }

  static String rawName(Path image) {
    String base = image.getFileName().toString();
    return base.substring(0, base.lastIndexOf('.')) + ".raw";
  }

  /** A host file outside the image's tree; every output is scanned for its marker. */
  static final String MARKER = "host secret: never in an output";

  @Test
  void aBackingNameOutOfTheTreeReachesNoOutput(@TempDir Path dir) throws Exception {
    Path images = Files.createDirectory(dir.resolve("images"));
    Path host = Files.createDirectory(dir.resolve("host"));
    Path secret =
        Files.write(
            host.resolve("secret.raw"),
            (MARKER + "\n").repeat(20000).getBytes(StandardCharsets.US_ASCII));
    Files.createSymbolicLink(images.resolve("link.raw"), secret);
    List<String> names = List.of(secret.toString(), "../host/secret.raw", "link.raw");
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    for (String name : names) {
      Qemu.img(images, "create", "-q", "-f", "qcow2", "-b", name, "-F", "raw", "top.qcow2", "1M");
      Path top = images.resolve("top.qcow2");
      Path out = dir.resolve("out.raw");
      Jqcowfs.Run convert = Jqcowfs.run("convert", top.toString(), out.toString());
      assertEquals(1, convert.code(), name + ": " + convert.err());
      assertTrue(convert.err().contains("'" + name + "'"), convert.err());
      assertTrue(convert.err().contains("resolves to " + secret.toRealPath()), convert.err());
      assertFalse(holdsMarker(out), "convert output of " + name);

      Jqcowfs.Run mount = Jqcowfs.run("mount", top.toString(), mnt.toString());
      assertEquals(1, mount.code(), name + ": " + mount.err());
      assertTrue(mount.err().contains("outside the allowed directories"), mount.err());
      assertFalse(Jqcowfs.mounted(mnt), "nothing is mounted after a refusal");
      assertFalse(holdsMarker(mnt.resolve("top.raw")), "flat file of " + name);
      Files.delete(top);
    }

    // Asked for, each way out opens the chain (through the real launcher and mount).
    Qemu.img(
        images,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        secret.toString(),
        "-F",
        "raw",
        "t.qcow2",
        "1M");
    Path t = images.resolve("t.qcow2");
    for (List<String> way :
        List.of(List.of("--unsafe-backing"), List.of("--allow-dir", host.toString()))) {
      List<String> args = new ArrayList<>(way);
      args.add(t.toString());
      try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, args.toArray(String[]::new))) {
        assertTrue(holdsMarker(m.file("t.raw")), way + " follows the name");
      }
    }
  }

  private static boolean holdsMarker(Path f) throws IOException {
    if (!Files.exists(f)) {
      return false;
    }
    return new String(Files.readAllBytes(f), StandardCharsets.ISO_8859_1).contains(MARKER);
  }

  @Test
  void aFormatlessBackingFileWithAQcow2HeaderIsRefusedUnlessProbingIsAsked(@TempDir Path dir)
      throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "inner.qcow2", "1M");
    Qemu.io(dir, "inner.qcow2", "write -q -P 7 0 64k");
    Files.move(dir.resolve("inner.qcow2"), dir.resolve("disk.img"));
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "top.qcow2", "1M");
    Path top = dir.resolve("top.qcow2");
    // qemu-img stores no backing name without a format any more: the name goes in by hand
    try (RandomAccessFile raf = new RandomAccessFile(top.toFile(), "rw")) {
      raf.seek(0xe00);
      raf.write("disk.img".getBytes(StandardCharsets.US_ASCII));
      raf.seek(8);
      raf.writeLong(0xe00);
      raf.seek(16);
      raf.writeInt("disk.img".length());
    }
    Jqcowfs.Run r = Jqcowfs.run("convert", top.toString(), dir.resolve("o.raw").toString());
    assertEquals(1, r.code());
    assertTrue(r.err().contains("qemu-img rebase -u -F qcow2 -b disk.img"), r.err());
    r =
        Jqcowfs.run(
            "convert", "--probe-backing-format", top.toString(), dir.resolve("o.raw").toString());
    assertEquals(0, r.code(), r.err());
    Path ref = Qemu.convertRaw(top, dir.resolve("ref.raw"), null);
    assertArrayEquals(Files.readAllBytes(ref), Files.readAllBytes(dir.resolve("o.raw")));
  }

  @Test
  void aFileThatIsNotQcow2IsRefusedUnlessFormatRaw(@TempDir Path dir) throws Exception {
    Path empty = Files.createFile(dir.resolve("empty.qcow2"));
    Jqcowfs.Run r = Jqcowfs.run("info", empty.toString());
    assertEquals(1, r.code());
    assertTrue(r.err().contains(empty + ": not a qcow2 image (the file is empty)"), r.err());
    Path raw = Files.write(dir.resolve("disk.raw"), new byte[1 << 20]);
    r = Jqcowfs.run("info", raw.toString());
    assertTrue(r.err().contains("magic 0x00000000"), r.err());
    assertTrue(r.err().contains("-f raw"), r.err());
    r = Jqcowfs.run("info", "-f", "raw", raw.toString());
    assertEquals(0, r.code(), r.err());
    assertTrue(r.out().contains("file format: raw"), r.out());
  }

  /** As root: a 0600 image gives a 0400 flat file that another user cannot read. */
  @Test
  void theFlatFileIsNoMoreReadableThanTheImage(@TempDir Path dir) throws Exception {
    org.junit.jupiter.api.Assumptions.assumeTrue(
        "root".equals(System.getProperty("user.name")), "needs root: mounts for another user");
    Files.setPosixFilePermissions(dir, PosixFilePermissions.fromString("rwxr-xr-x"));
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "p.qcow2", "1M");
    Qemu.io(dir, "p.qcow2", "write -q -P 9 0 64k");
    Path image = dir.resolve("p.qcow2");
    Files.setPosixFilePermissions(image, PosixFilePermissions.fromString("rw-------"));
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Files.setPosixFilePermissions(mnt, PosixFilePermissions.fromString("rwxr-xr-x"));

    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--allow-other", image.toString())) {
      Path flat = m.file("p.raw");
      assertEquals("r--------", PosixFilePermissions.toString(Files.getPosixFilePermissions(flat)));
      assertEquals(Files.getOwner(image), Files.getOwner(flat));
      Jqcowfs.Run other = asNobody("head", "-c", "4", flat.toString());
      assertNotEquals(0, other.code());
      assertTrue(other.err().contains("Permission denied"), other.err());
    }
    try (Jqcowfs.Mount m =
        Jqcowfs.Mount.of(mnt, "--allow-other", "-o", "umask=0222", image.toString())) {
      Path flat = m.file("p.raw");
      assertEquals("r--r--r--", PosixFilePermissions.toString(Files.getPosixFilePermissions(flat)));
      Jqcowfs.Run other = asNobody("od", "-An", "-tx1", "-N4", flat.toString());
      assertEquals(0, other.code(), other.err());
      assertEquals("09 09 09 09", other.out().trim());
    }
  }

  private static Jqcowfs.Run asNobody(String... cmd) throws IOException, InterruptedException {
    List<String> c =
        new ArrayList<>(List.of("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"));
    c.addAll(List.of(cmd));
    return Jqcowfs.exec(c);
  }
}
