package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
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
 * {@code jqcowfs compare} against {@code qemu-img compare}: pairs of images built by qemu-img and
 * qemu-io, compared plainly and in strict mode by both; the same line on stdout and the same exit
 * status each time.
 */
class CompareCommandTest {
  @TempDir Path dir;

  /** A pair: how a and b are built (qemu-img and qemu-io steps), and the options to compare. */
  record Pair(String name, List<String[]> steps, List<String> options) {
    @Override
    public String toString() {
      return name;
    }
  }

  private static String[] img(String... args) {
    return args;
  }

  private static String[] io(String image, String command) {
    return new String[] {
      "qemu-io", "-f", image.endsWith(".raw") ? "raw" : "qcow2", "-c", command, image
    };
  }

  static Stream<Arguments> pairs() {
    List<Pair> p = new ArrayList<>();
    String[] sizes = {"4M", "8M"};
    for (String opts :
        List.of("-o cluster_size=65536", "-o cluster_size=512", "-o extended_l2=on")) {
      List<String[]> empty = new ArrayList<>();
      empty.add(create("a.qcow2", opts, "4M"));
      empty.add(create("b.qcow2", opts, "4M"));
      p.add(new Pair(opts + ": empty", empty, List.of()));
      List<String[]> differ = new ArrayList<>(empty);
      differ.add(io("a.qcow2", "write -P 1 0 64k"));
      differ.add(io("b.qcow2", "write -P 1 0 64k"));
      differ.add(io("b.qcow2", "write -P 2 3000 1"));
      p.add(new Pair(opts + ": a byte differs", differ, List.of()));
      List<String[]> zeros = new ArrayList<>(empty);
      zeros.add(io("a.qcow2", "write -P 0 64k 128k"));
      zeros.add(io("b.qcow2", "write -z 1M 64k"));
      zeros.add(io("b.qcow2", "write -P 5 2M 4k"));
      zeros.add(io("a.qcow2", "write -P 5 2M 4k"));
      p.add(new Pair(opts + ": written zeros, zero clusters", zeros, List.of()));
      p.add(new Pair(opts + ": written zeros, strict", zeros, List.of("-s")));
      List<String[]> unalloc = new ArrayList<>(empty);
      unalloc.add(io("b.qcow2", "write -P 7 6000 1"));
      p.add(new Pair(opts + ": data where the other has none", unalloc, List.of()));
    }
    for (String opts : List.of("-o cluster_size=65536")) {
      List<String[]> sized = new ArrayList<>();
      sized.add(create("a.qcow2", opts, sizes[0]));
      sized.add(create("b.qcow2", opts, sizes[1]));
      sized.add(io("a.qcow2", "write -P 3 1M 64k"));
      sized.add(io("b.qcow2", "write -P 3 1M 64k"));
      p.add(new Pair("sizes differ, identical", sized, List.of()));
      p.add(new Pair("sizes differ, strict", sized, List.of("-s")));
      List<String[]> over = new ArrayList<>(sized);
      over.add(io("b.qcow2", "write -P 4 5000000 1"));
      p.add(new Pair("sizes differ, data past the shorter", over, List.of()));
      List<String[]> overZero = new ArrayList<>(sized);
      overZero.add(io("b.qcow2", "write -z 5M 1M"));
      p.add(new Pair("sizes differ, zeros past the shorter", overZero, List.of()));
      p.add(new Pair("sizes differ, quiet", over, List.of("-q")));
      List<String[]> chain = new ArrayList<>();
      chain.add(create("base.qcow2", opts, "4M"));
      chain.add(io("base.qcow2", "write -P 8 0 1M"));
      chain.add(io("base.qcow2", "write -c -P 9 2M 128k"));
      chain.add(
          img(
              "qemu-img",
              "create",
              "-q",
              "-f",
              "qcow2",
              "-b",
              "base.qcow2",
              "-F",
              "qcow2",
              "a.qcow2"));
      chain.add(io("a.qcow2", "write -P 6 512k 4k"));
      chain.add(io("a.qcow2", "write -z 3M 64k"));
      chain.add(img("qemu-img", "convert", "-O", "qcow2", "a.qcow2", "b.qcow2"));
      p.add(new Pair("an overlay and its flattened copy", chain, List.of()));
      p.add(new Pair("an overlay and its flattened copy, strict", chain, List.of("-s")));
      List<String[]> chainDiffer = new ArrayList<>(chain);
      chainDiffer.add(io("b.qcow2", "write -P 1 2100000 1"));
      p.add(new Pair("an overlay and a changed copy (compressed base)", chainDiffer, List.of()));
      List<String[]> raw = new ArrayList<>(chain);
      raw.add(img("qemu-img", "convert", "-O", "raw", "a.qcow2", "r.raw"));
      raw.add(img("mv", "r.raw", "b.qcow2"));
      p.add(new Pair("qcow2 against raw", raw, List.of("-F", "raw")));
      p.add(new Pair("qcow2 read as raw", raw, List.of("-f", "raw", "-F", "raw")));
    }
    List<String[]> missing = new ArrayList<>();
    missing.add(create("a.qcow2", "-o cluster_size=65536", "4M"));
    p.add(new Pair("a missing image", missing, List.of()));
    return p.stream().map(Arguments::of);
  }

  private static String[] create(String image, String opts, String size) {
    List<String> cmd = new ArrayList<>(List.of("qemu-img", "create", "-q", "-f", "qcow2"));
    cmd.addAll(List.of(opts.split(" ")));
    cmd.add(image);
    cmd.add(size);
    return cmd.toArray(String[]::new);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("pairs")
  void answersAsQemuImgCompare(Pair pair) throws IOException {
    for (String[] step : pair.steps()) {
      Qemu.run(dir, step);
    }
    Path a = dir.resolve("a.qcow2");
    Path b = dir.resolve("b.qcow2");
    List<String> qemu = new ArrayList<>(List.of("qemu-img", "compare"));
    qemu.addAll(pair.options());
    qemu.addAll(List.of(a.toString(), b.toString()));
    Qemu.Check theirs = Qemu.anyExit(dir, 60, qemu.toArray(String[]::new));
    List<String> ours = new ArrayList<>(List.of("compare"));
    ours.addAll(pair.options());
    ours.addAll(List.of(a.toString(), b.toString()));
    DifferentialTest.Run r = DifferentialTest.cli(ours.toArray(String[]::new));
    assertEquals(theirs.exitStatus(), r.code(), pair + ": exit status; ours said " + r.err());
    assertEquals(theirs.json(), r.out(), pair + ": output");
  }
}
