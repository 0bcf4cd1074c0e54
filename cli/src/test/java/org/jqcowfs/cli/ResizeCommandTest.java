package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
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
 * {@code jqcowfs resize} against {@code qemu-img resize}: the same call on copies of the same image
 * by both; afterwards the same exit status, the same virtual size, content (qemu-img compare) and
 * map, and qemu-img check clean on ours; a refused call leaves our image's bytes as they were.
 */
class ResizeCommandTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir Path dir;

  /** An image built by {@code steps} (qemu-img, qemu-io), resized with {@code args}. */
  record Case(String name, List<String[]> steps, List<String> args) {
    @Override
    public String toString() {
      return name;
    }
  }

  private static String[] create(String image, String options, String size, String backing) {
    List<String> cmd = new ArrayList<>(List.of("qemu-img", "create", "-q", "-f", "qcow2"));
    cmd.addAll(List.of(options.split(" ")));
    if (backing != null) {
      cmd.addAll(List.of("-b", backing, "-F", "qcow2"));
    }
    cmd.add(image);
    cmd.add(size);
    return cmd.toArray(String[]::new);
  }

  private static String[] io(String image, String command) {
    return new String[] {"qemu-io", "-f", "qcow2", "-c", command, image};
  }

  static Stream<Arguments> cases() {
    List<Case> c = new ArrayList<>();
    for (String opts :
        List.of(
            "-o cluster_size=65536",
            "-o cluster_size=512",
            "-o extended_l2=on",
            "-o compat=0.10",
            "-o cluster_size=2M")) {
      List<String[]> data = new ArrayList<>();
      data.add(create("img.qcow2", opts, "4M", null));
      data.add(io("img.qcow2", "write -P 1 0 1M"));
      String compressed = opts.contains("2M") ? "write -c -P 2 2M 2M" : "write -c -P 2 2M 128k";
      data.add(io("img.qcow2", compressed)); // compressed writes are of whole clusters
      data.add(io("img.qcow2", "write -P 3 3M 1M"));
      data.add(io("img.qcow2", "write -z 1M 64k"));
      c.add(new Case(opts + ": grow a little", data, List.of("6M")));
      boolean small = opts.contains("=512"); // 32 KiB per L2 table: 64M needs 16 times the L1
      c.add(new Case(opts + ": grow the L1 table", data, List.of(small ? "64M" : "3G")));
      c.add(new Case(opts + ": grow by +1G", data, List.of(small ? "+16M" : "+1G")));
      c.add(new Case(opts + ": shrink over data", data, List.of("--shrink", "2560K")));
      c.add(new Case(opts + ": shrink by -1M", data, List.of("--shrink", "--", "-1M")));
      c.add(new Case(opts + ": shrink refused without --shrink", data, List.of("1M")));
      c.add(new Case(opts + ": not a multiple of 512", data, List.of("5000000")));
      c.add(new Case(opts + ": the same size", data, List.of("4M")));
      List<String[]> overlay = new ArrayList<>();
      overlay.add(create("base.qcow2", opts, "8M", null));
      overlay.add(io("base.qcow2", "write -P 7 0 8M"));
      overlay.add(create("img.qcow2", opts, "4000256", "base.qcow2"));
      overlay.add(io("img.qcow2", "write -P 8 1M 4k"));
      c.add(new Case(opts + ": an overlay grown over its longer base", overlay, List.of("6M")));
      c.add(new Case(opts + ": an overlay grown past its base", overlay, List.of("12M")));
      c.add(new Case(opts + ": an overlay shrunk", overlay, List.of("--shrink", "2M")));
      List<String[]> snap = new ArrayList<>(data);
      snap.add(new String[] {"qemu-img", "snapshot", "-c", "s1", "img.qcow2"});
      snap.add(io("img.qcow2", "write -P 9 3M 64k"));
      c.add(new Case(opts + ": with a snapshot, grown", snap, List.of(small ? "40M" : "1G")));
      c.add(new Case(opts + ": with a snapshot, shrunk", snap, List.of("--shrink", "1M")));
      if (opts.contains("compat=0.10") || opts.contains("2M")) {
        continue;
      }
      // persistent dirty bitmaps: an enabled one, a disabled one with bits merged in
      List<String[]> bitmaps = new ArrayList<>(data);
      bitmaps.add(new String[] {"qemu-img", "bitmap", "--add", "-g", "4096", "img.qcow2", "b0"});
      bitmaps.add(new String[] {"qemu-img", "bitmap", "--add", "--disable", "img.qcow2", "b1"});
      bitmaps.add(io("img.qcow2", "write -P 4 3900k 196k"));
      bitmaps.add(io("img.qcow2", "write -P 5 100k 8k"));
      bitmaps.add(new String[] {"qemu-img", "bitmap", "--merge", "b0", "img.qcow2", "b1"});
      bitmaps.add(io("img.qcow2", "write -P 6 2M 4k"));
      c.add(new Case(opts + ": bitmaps, grown", bitmaps, List.of("6M")));
      c.add(
          new Case(opts + ": bitmaps, grown past the L1", bitmaps, List.of(small ? "64M" : "3G")));
      c.add(new Case(opts + ": bitmaps, shrunk", bitmaps, List.of("--shrink", "3999k")));
      List<String[]> broken = new ArrayList<>(bitmaps);
      broken.add( // qemu-io's abort leaves b0 in use: inconsistent
          new String[] {"bash", "-c", "qemu-io -c 'write 0 4k' -c abort img.qcow2 || true"});
      c.add(new Case(opts + ": an inconsistent bitmap refused", broken, List.of("6M")));
    }
    return c.stream().map(Arguments::of);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void resizesAsQemuImg(Case k) throws IOException {
    for (String[] step : k.steps()) {
      Qemu.run(dir, step);
    }
    Path ours = Files.copy(dir.resolve("img.qcow2"), dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(dir.resolve("img.qcow2"), dir.resolve("theirs.qcow2"));
    byte[] before = Files.readAllBytes(ours);
    List<String> qemu = new ArrayList<>(List.of("qemu-img", "resize"));
    qemu.addAll(k.args().subList(0, k.args().size() - 1));
    qemu.add(theirs.toString());
    qemu.add(k.args().get(k.args().size() - 1));
    int want = Qemu.anyExit(dir, 120, qemu.toArray(String[]::new)).exitStatus();
    List<String> args = new ArrayList<>(List.of("resize"));
    args.addAll(k.args().subList(0, k.args().size() - 1));
    args.add(ours.toString());
    args.add(k.args().get(k.args().size() - 1));
    DifferentialTest.Run r = DifferentialTest.cli(args.toArray(String[]::new));
    assertEquals(want, r.code(), k + ": exit status; ours said " + r.err());
    if (want != 0) {
      assertTrue(r.err().startsWith("jqcowfs: "), r.err());
      assertArrayEquals(before, Files.readAllBytes(ours), k + ": a refused call changed it");
      return;
    }
    assertEquals(size(theirs), size(ours), k + ": virtual size");
    assertEquals(0, Qemu.check(ours).exitStatus(), k + ": qemu-img check " + Qemu.check(ours));
    assertEquals(0, Qemu.compare(theirs, ours).exitStatus(), k + ": content");
    assertEquals(Qemu.mapJson(theirs), Qemu.mapJson(ours), k + ": map");
    JsonNode bitmaps = info(theirs).path("format-specific").path("data").path("bitmaps");
    assertEquals(
        bitmaps, info(ours).path("format-specific").path("data").path("bitmaps"), k + ": bitmaps");
    for (JsonNode b : bitmaps) {
      String name = b.get("name").asText();
      assertEquals(
          Qemu.dirtyRuns(Qemu.dirtyBitmap(theirs, name)),
          Qemu.dirtyRuns(Qemu.dirtyBitmap(ours, name)),
          k + ": bitmap " + name);
    }
  }

  private static JsonNode info(Path image) throws IOException {
    return JSON.readTree(Qemu.img(image.getParent(), "info", "--output=json", image.toString()));
  }

  private static long size(Path image) throws IOException {
    return JSON.readTree(Qemu.img(image.getParent(), "info", "--output=json", image.toString()))
        .get("virtual-size")
        .asLong();
  }
}
