package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.TreeMap;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code jqcowfs bitmap} against {@code qemu-img bitmap}: the same calls on two copies of an image,
 * one after the other; after each, both list the same bitmaps (name, granularity, flags) in {@code
 * qemu-img info}, every bitmap exports the same dirty ranges through {@code qemu-nbd -B}, {@code
 * qemu-img check} finds nothing (no leak) in ours; refused calls fail on both and change nothing.
 */
class BitmapCommandTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir Path dir;

  @ParameterizedTest
  @ValueSource(strings = {"65536", "512", "2M"})
  void editsAsQemuImgBitmap(String clusterSize) throws Exception {
    Path base = dir.resolve("base.qcow2");
    Qemu.img(
        dir,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=" + clusterSize,
        "base.qcow2",
        "100000000");
    Qemu.img(dir, "bitmap", "--add", "-g", "512", "base.qcow2", "g512");
    Qemu.img(dir, "bitmap", "--add", "base.qcow2", "g64k");
    Qemu.img(dir, "bitmap", "--add", "-g", "4M", "base.qcow2", "off");
    Qemu.io(
        dir,
        "base.qcow2",
        "write -q -P 1 1000 3000",
        "write -q -z 20M 64k",
        "discard 40M 2M",
        "write -q -P 3 99999000 1000");
    Qemu.img(dir, "bitmap", "--disable", "base.qcow2", "off");
    Path other = dir.resolve("other.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", other.toString(), "100000000");
    Qemu.img(dir, "bitmap", "--add", "-g", "1M", other.toString(), "src");
    Qemu.io(dir, other.toString(), "write -q -P 9 7M 3M", "write -q -P 9 60000000 5000");
    Path ours = Files.copy(base, dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(base, dir.resolve("theirs.qcow2"));
    String[][] calls = {
      {"--add", "new"},
      {"--add", "-g", "512", "--disable", "fine"},
      {"--clear", "g64k"},
      {"--merge", "g512", "g64k"},
      {"--merge", "src", "-b", other.toString(), "-F", "qcow2", "off"},
      {"--enable", "off"},
      {"--disable", "g512"},
      {"--merge", "off", "--disable", "--merge", "g512", "new"},
      {"--clear", "--enable", "fine"},
      {"--remove", "fine"},
      {"--add", "g64k"}, // refused: exists
      {"--remove", "nope"}, // refused: none of that name
      {"--enable", "--add", "-g", "1000", "x"}, // refused: not a power of 2
      {"--remove", "g512"},
      {"--remove", "g64k"},
      {"--remove", "off"},
      {"--remove", "new"}, // the last one: the extension goes
      {"--add", "-g", "16M", "again"},
    };
    for (String[] call : calls) {
      int want = bitmap(theirs, call, true);
      int got = bitmap(ours, call, false);
      String what = clusterSize + ": " + Arrays.toString(call);
      assertEquals(want, got, what + ": exit status");
      assertEquals(state(theirs), state(ours), what);
      Qemu.Check check = Qemu.check(ours);
      assertEquals(0, check.exitStatus(), what + ": qemu-img check: " + check);
      Qemu.Check info = Qemu.anyExit(dir, 60, "qemu-img", "info", ours.toString());
      assertEquals("", info.stderr(), what + ": qemu-img info warns");
    }
    assertTrue(state(ours).contains("again"), state(ours));
  }

  /** Runs the call as qemu-img bitmap ({@code qemu}) or jqcowfs bitmap; returns the exit status. */
  private int bitmap(Path image, String[] call, boolean qemu) throws IOException {
    List<String> args = new ArrayList<>(Arrays.asList(call));
    String name = args.remove(args.size() - 1);
    args.add(image.toString());
    args.add(name);
    if (qemu) {
      List<String> cmd = new ArrayList<>(List.of("qemu-img", "bitmap"));
      cmd.addAll(args);
      return Qemu.anyExit(dir, 60, cmd.toArray(String[]::new)).exitStatus();
    }
    args.add(0, "bitmap");
    DifferentialTest.Run r = DifferentialTest.cli(args.toArray(String[]::new));
    if (r.code() != 0) {
      assertTrue(r.err().startsWith("jqcowfs: "), r.err());
    }
    return r.code();
  }

  /** The bitmaps as qemu-img info lists them, by name, with their dirty ranges from qemu-nbd. */
  private static String state(Path image) throws IOException {
    JsonNode info =
        JSON.readTree(Qemu.img(image.getParent(), "info", "--output=json", image.toString()));
    TreeMap<String, String> out = new TreeMap<>();
    for (JsonNode b : info.path("format-specific").path("data").path("bitmaps")) {
      String name = b.get("name").asText();
      out.put(
          name,
          b.get("granularity").asLong()
              + " "
              + b.get("flags")
              + " "
              + Qemu.dirtyRuns(Qemu.dirtyBitmap(image, name)));
    }
    return out.toString();
  }
}
