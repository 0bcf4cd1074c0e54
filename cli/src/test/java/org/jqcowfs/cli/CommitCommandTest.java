package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * {@code jqcowfs commit} against {@code qemu-img commit}: the same chain built twice (base &lt;-
 * mid &lt;- top, with data, zero clusters, discards and a compressed range), the same call on each;
 * afterwards the same exit status, every layer reads as qemu-img's does (qemu-img compare), checks
 * clean, and the top decides the same ranges (none once emptied); a refused call changes no byte.
 */
class CommitCommandTest {
  @TempDir Path dir;

  static Stream<Arguments> cases() {
    List<Arguments> c = new ArrayList<>();
    for (String opts :
        List.of(
            "-o cluster_size=65536",
            "-o cluster_size=512",
            "-o extended_l2=on",
            "-o compat=0.10")) {
      c.add(Arguments.of(opts, List.of()));
      c.add(Arguments.of(opts, List.of("-d")));
      c.add(Arguments.of(opts, List.of("-b", "base.qcow2")));
    }
    c.add(Arguments.of("-o cluster_size=65536", List.of("-b", "nonexistent.qcow2")));
    c.add(Arguments.of("-o cluster_size=65536", List.of("-b", "top.qcow2")));
    c.add(Arguments.of("lone", List.of()));
    return c.stream();
  }

  /** base (8M, smaller than the rest) &lt;- mid &lt;- top, or one lone image, in {@code at}. */
  private static void chain(Path at, String opts) throws IOException {
    Files.createDirectories(at);
    if (opts.equals("lone")) {
      create(at, "top.qcow2", "-o cluster_size=65536", "12M", null);
      Qemu.io(at, "top.qcow2", "write -q -P 1 0 1M");
      return;
    }
    create(at, "base.qcow2", opts, "8M", null);
    Qemu.io(at, "base.qcow2", "write -q -P 1 0 4M", "write -q -P 2 6M 2M");
    create(at, "mid.qcow2", opts, "12M", "base.qcow2");
    Qemu.io(
        at,
        "mid.qcow2",
        "write -q -P 3 1M 100k",
        opts.contains("0.10") ? "write -q -P 0 2M 512k" : "write -q -z 2M 512k",
        "write -q -P 4 9M 3000");
    create(at, "top.qcow2", opts, "12M", "mid.qcow2");
    Qemu.io(
        at,
        "top.qcow2",
        "write -q -P 5 1500000 70000",
        opts.contains("0.10") ? "write -q -P 0 6M 64k" : "write -q -z 6M 64k",
        "write -q -P 6 10M 1M",
        "discard -q 10M 64k");
  }

  private static void create(Path at, String image, String opts, String size, String backing)
      throws IOException {
    List<String> cmd = new ArrayList<>(List.of("create", "-q", "-f", "qcow2"));
    cmd.addAll(List.of(opts.split(" ")));
    if (backing != null) {
      cmd.addAll(List.of("-b", backing, "-F", "qcow2"));
    }
    cmd.add(image);
    cmd.add(size);
    Qemu.img(at, cmd.toArray(String[]::new));
  }

  @ParameterizedTest(name = "{0} {1}")
  @MethodSource("cases")
  void commitsAsQemuImg(String opts, List<String> options) throws IOException {
    Path ours = dir.resolve("ours");
    Path theirs = dir.resolve("theirs");
    chain(ours, opts);
    chain(theirs, opts);
    Path before = Qemu.convertRaw(ours.resolve("top.qcow2"), dir.resolve("before.raw"), null);
    byte[] topBytes = Files.readAllBytes(ours.resolve("top.qcow2"));
    List<String> qemu = new ArrayList<>(List.of("qemu-img", "commit"));
    qemu.addAll(options);
    qemu.add("top.qcow2");
    int want = Qemu.anyExit(theirs, 120, qemu.toArray(String[]::new)).exitStatus();
    List<String> args = new ArrayList<>(List.of("commit"));
    args.addAll(options);
    args.add(ours.resolve("top.qcow2").toString());
    DifferentialTest.Run r = DifferentialTest.cli(args.toArray(String[]::new));
    String what = opts + " " + options;
    assertEquals(want, r.code(), what + ": exit status; ours said " + r.err());
    if (want != 0) {
      assertTrue(r.err().startsWith("jqcowfs: "), r.err());
      assertArrayEquals(topBytes, Files.readAllBytes(ours.resolve("top.qcow2")), what);
      return;
    }
    assertEquals("Image committed.\n", r.out(), what);
    for (String layer : List.of("top.qcow2", "mid.qcow2", "base.qcow2")) {
      Path mine = ours.resolve(layer);
      assertEquals(0, Qemu.check(mine).exitStatus(), what + ": check " + layer);
      if (!layer.equals("mid.qcow2") || !options.contains("-b")) { // -b: mid is invalid after
        assertEquals(
            0, Qemu.compare(theirs.resolve(layer), mine).exitStatus(), what + ": " + layer);
      }
    }
    assertEquals(0, Qemu.compare(before, ours.resolve("top.qcow2")).exitStatus(), what);
    assertEquals(kinds(theirs.resolve("top.qcow2")), kinds(ours.resolve("top.qcow2")), what);
    if (!options.contains("-d") && !options.contains("-b")) { // emptied: space given back
      long mine = allocated(ours.resolve("top.qcow2"));
      long qemuBytes = allocated(theirs.resolve("top.qcow2"));
      // ours keeps the emptied L2 tables (at most 384 of 512 B here), QEMU rebuilds without them
      long cs = opts.contains("=512") ? 512 : opts.contains("2M") ? 2 << 20 : 65536;
      assertTrue(
          mine <= qemuBytes + Math.max(256 << 10, 2 * cs),
          what + ": the emptied top holds " + mine + " bytes, qemu-img's " + qemuBytes);
    }
  }

  /** The bytes a file's blocks take on the host (st_blocks times 512). */
  private static long allocated(Path file) throws IOException {
    return ((Number) Files.getAttribute(file, "unix:size")).longValue() > 0
        ? Long.parseLong(Qemu.run(file.getParent(), "stat", "-c", "%b", file.toString()).strip())
            * 512
        : 0;
  }

  /**
   * The ranges the top itself decides, from its map: emptied, none. (How the layers below hold the
   * rest may differ: QEMU's commit job writes whole clusters where it copies subclusters.)
   */
  private static String kinds(Path image) throws IOException {
    StringBuilder b = new StringBuilder();
    for (String line : Qemu.mapJson(image).split("\n")) {
      if (line.contains("\"depth\": 0,")) {
        b.append(line.replaceAll(", \"offset\": \\d+", "")).append('\n');
      }
    }
    return b.toString();
  }
}
