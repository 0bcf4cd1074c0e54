package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code jqcowfs convert -O qcow2} against {@code qemu-img convert -O qcow2}: the same source chain
 * (a base made from a raw file with random, patterned and self-repeating data and a compressed
 * range, an overlay with data, zero clusters and a discard, the disk's size not a multiple of the
 * cluster), the same arguments; afterwards the same exit status, the output reads as the source
 * (qemu-img compare), checks clean, has the info facts qemu-img's output has, maps the same ranges
 * as data, zero or unallocated, and is within 10% of its file length and allocated blocks.
 */
class ConvertQcow2Test {
  @TempDir static Path src;
  @TempDir Path dir;

  @BeforeAll
  static void source() throws IOException {
    byte[] raw = new byte[12 << 20];
    new Random(7).nextBytes(raw); // 0-1M: incompressible
    for (int i = 1 << 20; i < raw.length; i++) {
      raw[i] = (i >> 12) % 5 == 0 ? 0 : (byte) (i % 251 < 80 ? i >> 9 : 0x41); // compressible
    }
    java.util.Arrays.fill(raw, 8 << 20, 9 << 20, (byte) 0); // a zero MiB inside the data
    for (int i = 10 << 20; i < 11 << 20; i += 8192) { // 8 KiB repeats: matches 8 KiB back, which
      System.arraycopy(raw, 0, raw, i, 8192); // QEMU's 4 KiB inflate window cannot reach
    }
    Files.write(src.resolve("base.raw"), raw);
    Qemu.img(src, "convert", "-O", "qcow2", "base.raw", "base.qcow2");
    Qemu.io(src, "base.qcow2", "write -q -c -P 7 8M 256k");
    Qemu.img(
        src,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.qcow2",
        "-F",
        "qcow2",
        "top.qcow2",
        String.valueOf((16 << 20) + 3 * 512));
    Qemu.io(
        src,
        "top.qcow2",
        "write -q -P 3 1500000 70000",
        "write -q -z 2M 192k",
        "write -q -P 5 6M 1M",
        "discard -q 6M 64k",
        "write -q -P 6 14M 3000",
        "write -q -P 8 16M 1000");
  }

  @ParameterizedTest(name = "[{index}] {0}")
  @ValueSource(
      strings = {
        "",
        "-c",
        "-c -o compression_type=zstd",
        "-o cluster_size=512",
        "-c -o cluster_size=4096",
        "-c -o cluster_size=2M",
        "-o extended_l2=on",
        "-c -o extended_l2=on,cluster_size=128k",
        "-o compat=0.10 -c",
        "-c -o refcount_bits=1",
        "-o lazy_refcounts=on,refcount_bits=64",
        "-B base.qcow2 -F qcow2",
        "-c -B base.qcow2 -F qcow2 -o cluster_size=16k",
      })
  void convertsAsQemuImg(String options) throws IOException {
    List<String> opts = options.isEmpty() ? List.of() : List.of(options.split(" "));
    Path mine = dir.resolve("mine.qcow2");
    Path theirs = dir.resolve("theirs.qcow2");
    List<String> qemu = new ArrayList<>(List.of("qemu-img", "convert", "-O", "qcow2"));
    qemu.addAll(opts);
    qemu.addAll(List.of(src.resolve("top.qcow2").toString(), theirs.toString()));
    // -B names the backing file relative to the output: both outputs sit beside the source's base
    Files.copy(src.resolve("base.qcow2"), dir.resolve("base.qcow2"));
    assertEquals(0, Qemu.anyExit(dir, 300, qemu.toArray(String[]::new)).exitStatus(), "qemu-img");
    List<String> args = new ArrayList<>(List.of("convert", "-q", "-O", "qcow2"));
    args.addAll(opts);
    args.addAll(List.of(src.resolve("top.qcow2").toString(), mine.toString()));
    DifferentialTest.Run r = DifferentialTest.cli(args.toArray(String[]::new));
    assertEquals(0, r.code(), options + ": " + r.err());
    assertEquals(0, Qemu.compare(src.resolve("top.qcow2"), mine).exitStatus(), options);
    assertEquals(0, Qemu.check(mine).exitStatus(), options + ": check");
    assertEquals(facts(theirs), facts(mine), options);
    assertEquals(kinds(theirs), kinds(mine), options);
    long want = Files.size(theirs);
    long got = Files.size(mine);
    assertTrue(Math.abs(got - want) <= want / 10, options + ": length " + got + " vs " + want);
    long wantBlocks = blocks(theirs);
    long gotBlocks = blocks(mine);
    assertTrue(
        Math.abs(gotBlocks - wantBlocks) <= wantBlocks / 10,
        options + ": allocated " + gotBlocks + " vs " + wantBlocks);
    if (options.contains("-c")) {
      assertTrue(Qemu.check(mine).number("compressed-clusters") > 0, options);
    }
  }

  @Test
  void anExistingOutputIsReplacedButNeverASourceLayer() throws IOException {
    Path out = dir.resolve("out.qcow2");
    Files.writeString(out, "not an image");
    String top = src.resolve("top.qcow2").toString();
    DifferentialTest.Run r = DifferentialTest.cli("convert", "-q", "-O", "qcow2", top, out + "");
    assertEquals(0, r.code(), r.err());
    assertEquals(0, Qemu.compare(src.resolve("top.qcow2"), out).exitStatus());
    Files.copy(src.resolve("base.qcow2"), dir.resolve("base.qcow2"));
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "o.qcow2");
    byte[] base = Files.readAllBytes(dir.resolve("base.qcow2"));
    r = DifferentialTest.cli("convert", "-O", "qcow2", dir + "/o.qcow2", dir + "/base.qcow2");
    assertEquals(1, r.code());
    assertTrue(r.err().contains("is a layer of the source"), r.err());
    assertTrue(java.util.Arrays.equals(base, Files.readAllBytes(dir.resolve("base.qcow2"))));
  }

  @Test
  void refusesWhatQemuImgRefuses() throws IOException {
    String top = src.resolve("top.qcow2").toString();
    for (String[] args :
        List.of(
            new String[] {"convert", "-c", top, dir + "/a.raw"},
            new String[] {"convert", "-O", "qcow2", "-B", "base.qcow2", top, dir + "/b.qcow2"},
            new String[] {"convert", "-O", "vmdk", top, dir + "/c.vmdk"},
            new String[] {"convert", "-O", "qcow2", "-o", "cluster_size=3k", top, dir + "/d"})) {
      DifferentialTest.Run r = DifferentialTest.cli(args);
      assertEquals(1, r.code(), String.join(" ", args) + ": " + r.err());
      assertTrue(r.err().startsWith("jqcowfs: "), r.err());
    }
    assertFalse(Files.exists(dir.resolve("b.qcow2")));
  }

  /** What {@code qemu-img info} says that the options decide. */
  private static String facts(Path image) throws IOException {
    String info = Qemu.img(image.getParent(), "info", "--output=json", image.toString());
    StringBuilder b = new StringBuilder();
    for (String key :
        List.of(
            "virtual-size",
            "cluster-size",
            "compat",
            "compression-type",
            "lazy-refcounts",
            "refcount-bits",
            "extended-l2",
            "backing-filename",
            "backing-filename-format")) {
      Matcher m = Pattern.compile("\"" + key + "\": (\"[^\"]*\"|[^,\\n]*)").matcher(info);
      b.append(key).append('=').append(m.find() ? m.group(1) : "-").append('\n');
    }
    return b.toString();
  }

  /**
   * The output's own ranges as qemu-img map reports them, without host offsets, neighbours with the
   * same flags joined (map splits where host offsets are not contiguous, and workers write clusters
   * out of guest order).
   */
  private static String kinds(Path image) throws IOException {
    Pattern entry = Pattern.compile("\\{ \"start\": (\\d+), \"length\": (\\d+), (.*)\\}");
    List<String> out = new ArrayList<>();
    long start = -1;
    long end = -1;
    String flags = null;
    for (String line : Qemu.mapJson(image).split("\n")) {
      Matcher m = entry.matcher(line.replaceAll(", \"offset\": \\d+", ""));
      if (!m.find() || !m.group(3).contains("\"depth\": 0,")) {
        continue;
      }
      long s = Long.parseLong(m.group(1));
      if (s == end && m.group(3).equals(flags)) {
        end += Long.parseLong(m.group(2));
        continue;
      }
      if (flags != null) {
        out.add(start + "+" + (end - start) + " " + flags);
      }
      start = s;
      end = s + Long.parseLong(m.group(2));
      flags = m.group(3);
    }
    out.add(start + "+" + (end - start) + " " + flags);
    return String.join("\n", out);
  }

  /** The file's allocated 512-byte blocks. */
  private static long blocks(Path file) throws IOException {
    return Long.parseLong(Qemu.run(file.getParent(), "stat", "-c", "%b", file.toString()).trim());
  }
}
