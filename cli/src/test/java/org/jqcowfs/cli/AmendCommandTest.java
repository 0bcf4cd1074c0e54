package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

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
 * {@code jqcowfs amend} against {@code qemu-img amend}: the same image built twice (data, zero
 * clusters with and without a host cluster, a compressed cluster, optionally a backing file and an
 * internal snapshot), the same {@code -o} on each; afterwards the same exit status and message, the
 * same {@code qemu-img info} (but file names and sizes), the same map kinds, the active disk and
 * the snapshot read alike, and ours checks clean. A refused amend changes no byte.
 */
class AmendCommandTest {
  @TempDir Path dir;

  static Stream<Arguments> cases() {
    List<Arguments> c = new ArrayList<>();
    for (String image : List.of("v3", "v3-backed", "v3-snapshot", "v2", "v3-512", "lazy")) {
      for (String o :
          List.of(
              "compat=0.10",
              "compat=1.1",
              "refcount_bits=1",
              "compat=1.1,refcount_bits=32,lazy_refcounts=on")) {
        c.add(Arguments.of(image, o));
      }
    }
    c.add(Arguments.of("v3", "refcount_bits=8"));
    c.add(Arguments.of("v3", "lazy_refcounts=on"));
    c.add(Arguments.of("v3", "compat=0.10,refcount_bits=16"));
    c.add(Arguments.of("v3", "size=12M"));
    c.add(Arguments.of("v3-backed", "size=12M"));
    c.add(Arguments.of("v3-snapshot", "refcount_bits=64"));
    c.add(Arguments.of("lazy", "lazy_refcounts=off"));
    for (String o :
        List.of(
            "compat=0.10,refcount_bits=8",
            "compat=2",
            "cluster_size=4096",
            "foo=bar",
            "refcount_bits=3",
            "size=1000")) {
      c.add(Arguments.of("v3", o));
    }
    c.add(Arguments.of("v3-backed", "backing_file=elsewhere.qcow2"));
    c.add(Arguments.of("v3-backed", "backing_fmt=raw"));
    c.add(Arguments.of("v3", "data_file=x.raw"));
    c.add(Arguments.of("extl2", "compat=0.10"));
    c.add(Arguments.of("zstd", "compat=0.10"));
    c.add(Arguments.of("zstd-empty", "compat=0.10"));
    c.add(Arguments.of("r8", "compat=0.10"));
    return c.stream();
  }

  /** The image of kind {@code kind} at {@code dir/name}, built by qemu-img and qemu-io. */
  private static void build(Path dir, String name, String kind) throws IOException {
    String opts =
        switch (kind) {
          case "v2" -> "compat=0.10";
          case "v3-512" -> "cluster_size=512";
          case "lazy" -> "lazy_refcounts=on";
          case "extl2" -> "extended_l2=on";
          case "zstd", "zstd-empty" -> "compression_type=zstd";
          case "r8" -> "refcount_bits=8";
          default -> "cluster_size=65536";
        };
    List<String> cmd = new ArrayList<>(List.of("create", "-q", "-f", "qcow2", "-o", opts));
    if (kind.equals("v3-backed")) {
      Qemu.img(dir, "create", "-q", "-f", "qcow2", "base.qcow2", "8M");
      Qemu.io(dir, "base.qcow2", "write -q -P 9 0 8M");
      cmd.addAll(List.of("-b", "base.qcow2", "-F", "qcow2"));
    }
    cmd.addAll(List.of(name, "8M"));
    Qemu.img(dir, cmd.toArray(String[]::new));
    if (kind.equals("zstd-empty")) {
      return;
    }
    boolean v2 = kind.equals("v2");
    Qemu.io(
        dir,
        name,
        "write -q -P 1 0 1M",
        v2 ? "write -q -P 0 2M 128k" : "write -q -z 2M 128k",
        "write -q -c -P 3 3M 64k",
        "write -q -P 4 5M 128k",
        v2 ? "write -q -P 0 5M 64k" : "write -q -z 5M 64k");
    if (kind.equals("v3-snapshot")) {
      Qemu.img(dir, "snapshot", "-c", "s1", name);
      Qemu.io(dir, name, "write -q -P 5 512k 1M", "write -q -z 6M 64k");
    }
  }

  @ParameterizedTest(name = "{0} -o {1}")
  @MethodSource("cases")
  void amendsAsQemuImg(String kind, String o) throws IOException {
    Path ours = dir.resolve("ours");
    Path theirs = dir.resolve("theirs");
    Files.createDirectories(ours);
    Files.createDirectories(theirs);
    build(ours, "img.qcow2", kind);
    build(theirs, "img.qcow2", kind);
    Path mine = ours.resolve("img.qcow2");
    byte[] before = Files.readAllBytes(mine);
    Qemu.Check want = Qemu.anyExit(theirs, 60, "qemu-img", "amend", "-o", o, "img.qcow2");
    DifferentialTest.Run r = DifferentialTest.cli("amend", "-o", o, mine.toString());
    String what = kind + " -o " + o;
    assertEquals(want.exitStatus(), r.code(), what + ": ours said " + r.err());
    if (want.exitStatus() != 0) {
      assertEquals(want.stderr().strip().replace("qemu-img", "jqcowfs"), r.err().strip(), what);
      assertArrayEquals(before, Files.readAllBytes(mine), what + ": changed on refusal");
      return;
    }
    Path other = theirs.resolve("img.qcow2");
    assertEquals(0, Qemu.check(mine).exitStatus(), what + ": " + Qemu.check(mine));
    assertEquals(info(other), info(mine), what);
    assertEquals(0, Qemu.compare(other, mine).exitStatus(), what + ": active disk");
    assertEquals(kinds(other), kinds(mine), what + ": map");
    if (kind.equals("v3-snapshot")) {
      assertArrayEquals(
          snapshot(theirs, "img.qcow2"), snapshot(ours, "img.qcow2"), what + ": snapshot");
    }
  }

  /** qemu-img info's JSON but the lines naming the file or its length. */
  private static String info(Path image) throws IOException {
    String json = Qemu.img(image.getParent(), "info", "--output=json", image.toString());
    StringBuilder b = new StringBuilder();
    for (String line : json.split("\n")) {
      if (!line.matches(
          ".*\"(filename|full-backing-filename|actual-size|date-sec|date-nsec|dirty-flag)\".*")) {
        b.append(line.strip()).append('\n');
      }
    }
    return b.toString();
  }

  private static String kinds(Path image) throws IOException {
    return Qemu.mapJson(image).replaceAll(", \"offset\": \\d+", "");
  }

  private static byte[] snapshot(Path dir, String image) throws IOException {
    Path raw = dir.resolve("s1.raw");
    Qemu.img(dir, "convert", "-O", "raw", "-l", "snapshot.name=s1", image, raw.toString());
    return Files.readAllBytes(raw);
  }
}
