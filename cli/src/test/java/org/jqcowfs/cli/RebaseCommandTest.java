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
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code jqcowfs rebase} against {@code qemu-img rebase}: the same call on copies of the same chain
 * by both; afterwards both tops read what the top read before (qemu-img compare with the raw image
 * converted before), name the same backing file and format, check clean, and read alike; refused
 * calls fail on both with exit 1 and leave the image's bytes as they were.
 */
class RebaseCommandTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  @TempDir Path dir;

  /**
   * base (data, a compressed range) &lt;- mid (data, zero clusters, a discard) &lt;- top (data),
   * and other.qcow2, an unrelated image of a different size with data of its own.
   */
  private void chain(String clusterOptions) throws IOException {
    create("base.qcow2", clusterOptions, "12M", null);
    Qemu.io(
        dir,
        "base.qcow2",
        "write -q -P 1 0 3M",
        clusterOptions.contains("2M") ? "write -q -c -P 2 4M 2M" : "write -q -c -P 2 4M 256k",
        "write -q -P 3 11M 1M");
    create("mid.qcow2", clusterOptions, "12M", "base.qcow2");
    Qemu.io(
        dir,
        "mid.qcow2",
        "write -q -P 4 1M 100k",
        "write -q -z 2M 512k",
        "discard -q 4M 64k",
        "write -q -P 5 7M 3000");
    create("top.qcow2", clusterOptions, "12M", "mid.qcow2");
    Qemu.io(dir, "top.qcow2", "write -q -P 6 1500000 70000", "write -q -z 11M 64k");
    create("other.qcow2", "-o cluster_size=65536", "10M", null);
    Qemu.io(dir, "other.qcow2", "write -q -P 1 0 1M", "write -q -P 7 5M 2M", "write -q -P 3 9M 1M");
  }

  private void create(String image, String options, String size, String backing)
      throws IOException {
    List<String> cmd = new ArrayList<>(List.of("create", "-q", "-f", "qcow2"));
    cmd.addAll(List.of(options.split(" ")));
    if (backing != null) {
      cmd.addAll(List.of("-b", backing, "-F", "qcow2"));
    }
    cmd.add(image);
    cmd.add(size);
    Qemu.img(dir, cmd.toArray(String[]::new));
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "-o cluster_size=65536",
        "-o cluster_size=512",
        "-o cluster_size=2M",
        "-o extended_l2=on",
        "-o compat=0.10"
      })
  void safeRebasesKeepWhatTheTopReads(String clusterOptions) throws IOException {
    chain(clusterOptions);
    Path before = Qemu.convertRaw(dir.resolve("top.qcow2"), dir.resolve("before.raw"), null);
    String[][] calls = {
      {"-b", "base.qcow2", "-F", "qcow2"}, // below mid: mid's ranges copied up
      {"-b", "other.qcow2", "-F", "qcow2"}, // an unrelated file of another size
      {"-b", ""}, // none: flattened
      {"-b", "before.raw", "-F", "raw"}, // its own content: nothing to copy
    };
    for (String[] call : calls) {
      String what = clusterOptions + " " + String.join(" ", call);
      Path ours = Files.copy(dir.resolve("top.qcow2"), dir.resolve("ours.qcow2"));
      Path theirs = Files.copy(dir.resolve("top.qcow2"), dir.resolve("theirs.qcow2"));
      assertEquals(0, rebase(theirs, call, true), what + ": qemu-img");
      assertEquals(0, rebase(ours, call, false), what + ": jqcowfs");
      assertEquals(backing(theirs), backing(ours), what + ": backing file and format");
      assertEquals(0, Qemu.check(ours).exitStatus(), what + ": qemu-img check");
      assertEquals(0, Qemu.compare(before, ours).exitStatus(), what + ": content changed");
      assertEquals(0, Qemu.compare(theirs, ours).exitStatus(), what + ": differs from qemu-img's");
      Files.delete(ours);
      Files.delete(theirs);
    }
  }

  @Test
  void aLoneImageRebasedKeepsReadingZerosWhereItHoldsNothing() throws IOException {
    chain("-o cluster_size=65536");
    create("lone.qcow2", "-o cluster_size=65536", "12M", null);
    Qemu.io(dir, "lone.qcow2", "write -q -P 9 5M 64k");
    Path before = Qemu.convertRaw(dir.resolve("lone.qcow2"), dir.resolve("before.raw"), null);
    Path ours = Files.copy(dir.resolve("lone.qcow2"), dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(dir.resolve("lone.qcow2"), dir.resolve("theirs.qcow2"));
    String[] call = {"-b", "base.qcow2", "-F", "qcow2"};
    assertEquals(0, rebase(theirs, call, true));
    assertEquals(0, rebase(ours, call, false));
    assertEquals(backing(theirs), backing(ours));
    assertEquals(0, Qemu.compare(before, ours).exitStatus());
    assertEquals(Qemu.mapJson(theirs), Qemu.mapJson(ours), "zero clusters where qemu-img put them");
    assertEquals(0, Qemu.check(ours).exitStatus());
  }

  @Test
  void unsafeRebasesOnlyRewriteTheHeader() throws IOException {
    chain("-o cluster_size=65536");
    Files.move(dir.resolve("mid.qcow2"), dir.resolve("moved.qcow2"));
    String[][] calls = {
      {"-u", "-b", "moved.qcow2", "-F", "qcow2"},
      {"-u", "-b", "/abs/elsewhere.qcow2", "-F", "qcow2"},
      {"-u", "-b", "x.raw", "-F", "raw"},
      {"-u", "-b", ""},
      {"-u"},
    };
    for (String[] call : calls) {
      String what = String.join(" ", call);
      Path ours = Files.copy(dir.resolve("top.qcow2"), dir.resolve("ours.qcow2"));
      Path theirs = Files.copy(dir.resolve("top.qcow2"), dir.resolve("theirs.qcow2"));
      assertEquals(0, rebase(theirs, call, true), what);
      assertEquals(0, rebase(ours, call, false), what);
      assertEquals(backing(theirs), backing(ours), what);
      assertArrayEquals(Files.readAllBytes(theirs), Files.readAllBytes(ours), what + ": bytes");
      Files.delete(ours);
      Files.delete(theirs);
    }
  }

  @Test
  void refusedCallsFailAsQemuImgAndChangeNothing() throws IOException {
    chain("-o cluster_size=65536");
    String[][] calls = {
      {}, // neither -b nor -u
      {"-b", "base.qcow2"}, // no -F
      {"-u", "-b", "base.qcow2"}, // no -F
      {"-b", "nonexistent.qcow2", "-F", "qcow2"},
      {"-u", "-b", "a".repeat(1100), "-F", "qcow2"}, // a name over 1023 bytes
    };
    byte[] image = Files.readAllBytes(dir.resolve("top.qcow2"));
    for (String[] call : calls) {
      String what = String.join(" ", call);
      Path ours = Files.copy(dir.resolve("top.qcow2"), dir.resolve("ours.qcow2"));
      Path theirs = Files.copy(dir.resolve("top.qcow2"), dir.resolve("theirs.qcow2"));
      assertEquals(1, rebase(theirs, call, true), what + ": qemu-img");
      assertEquals(1, rebase(ours, call, false), what + ": jqcowfs");
      assertArrayEquals(image, Files.readAllBytes(ours), what + ": the image changed");
      Files.delete(ours);
      Files.delete(theirs);
    }
  }

  /** Runs the call as qemu-img rebase ({@code qemu}) or jqcowfs rebase; returns the exit status. */
  private int rebase(Path image, String[] call, boolean qemu) throws IOException {
    List<String> args = new ArrayList<>(List.of(call));
    args.add(image.toString());
    if (qemu) {
      List<String> cmd = new ArrayList<>(List.of("qemu-img", "rebase"));
      cmd.addAll(args);
      return Qemu.anyExit(dir, 120, cmd.toArray(String[]::new)).exitStatus();
    }
    args.add(0, "rebase");
    DifferentialTest.Run r = DifferentialTest.cli(args.toArray(String[]::new));
    if (r.code() != 0) {
      assertTrue(r.err().startsWith("jqcowfs: "), r.err());
    }
    return r.code();
  }

  /** The backing file name and format qemu-img info reports. */
  private static String backing(Path image) throws IOException {
    JsonNode info =
        JSON.readTree(Qemu.img(image.getParent(), "info", "--output=json", image.toString()));
    return info.path("backing-filename").asText("-")
        + " "
        + info.path("backing-filename-format").asText("-");
  }
}
