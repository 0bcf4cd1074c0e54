package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

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
 * {@code jqcowfs snapshot -c/-a/-d} against {@code qemu-img snapshot}: the same image built twice
 * (data, a compressed range, a zero cluster), the same sequence of snapshot operations and qemu-io
 * writes between them on each; after every step the same exit status and message, the active disk
 * and every snapshot read as qemu-img's do (qemu-img compare, convert -l), the same snapshot list
 * (IDs, names, sizes), and {@code qemu-img check} clean.
 */
class SnapshotCommandTest {
  @TempDir Path dir;

  private Path ours;
  private Path theirs;

  private void build(String opts) throws IOException {
    for (String name : List.of("ours.qcow2", "theirs.qcow2")) {
      List<String> cmd = new ArrayList<>(List.of("create", "-q", "-f", "qcow2"));
      cmd.addAll(List.of(opts.split(" ")));
      cmd.addAll(List.of(name, "8M"));
      Qemu.img(dir, cmd.toArray(String[]::new));
      Qemu.io(
          dir,
          name,
          "write -q -P 1 0 1M",
          "write -q -c -P 2 2M 128k",
          opts.contains("0.10") ? "write -q -P 0 3M 64k" : "write -q -z 3M 64k",
          "write -q -P 3 5M 100k");
    }
    ours = dir.resolve("ours.qcow2");
    theirs = dir.resolve("theirs.qcow2");
  }

  /** Runs {@code jqcowfs snapshot ARGS ours} and {@code qemu-img snapshot ARGS theirs}. */
  private void both(String... args) throws IOException {
    List<String> q = new ArrayList<>(List.of("qemu-img", "snapshot"));
    q.addAll(List.of(args));
    q.add("theirs.qcow2");
    Qemu.Check want = Qemu.anyExit(dir, 60, q.toArray(String[]::new));
    List<String> j = new ArrayList<>(List.of("snapshot"));
    j.addAll(List.of(args));
    j.add(ours.toString());
    DifferentialTest.Run r = DifferentialTest.cli(j.toArray(String[]::new));
    String what = String.join(" ", args);
    assertEquals(want.exitStatus(), r.code(), what + ": ours said " + r.err());
    if (want.exitStatus() != 0) {
      assertEquals(
          want.stderr().strip().replace("qemu-img: ", "jqcowfs: "),
          r.err().strip().replace(ours.toString(), "theirs.qcow2"),
          what);
    }
  }

  private void write(String... commands) throws IOException {
    Qemu.io(dir, "ours.qcow2", commands);
    Qemu.io(dir, "theirs.qcow2", commands);
  }

  /** The active disk, each snapshot's disk and the snapshot list agree; ours checks clean. */
  private void same(String step) throws IOException {
    assertEquals(0, Qemu.check(ours).exitStatus(), step + ": check " + Qemu.check(ours));
    assertEquals(0, Qemu.compare(theirs, ours).exitStatus(), step + ": active disk");
    String list = list(theirs);
    assertEquals(list, list(ours), step + ": snapshot list");
    int compared = 0;
    for (String line : list.split("\n")) {
      if (line.isBlank() || line.startsWith("size ")) {
        continue;
      }
      compared++;
      String id = line.split(" ")[0];
      assertArrayEquals(
          snapshotDisk(theirs, id), snapshotDisk(ours, id), step + ": snapshot " + id);
    }
    assertEquals(Qemu.snapshots(theirs).size(), compared, step + ": snapshots compared");
  }

  /** The disk of snapshot {@code id} (names may repeat), as qemu-img convert -l reads it. */
  private byte[] snapshotDisk(Path image, String id) throws IOException {
    Path raw = dir.resolve("snapshot.raw");
    Qemu.img(dir, "convert", "-O", "raw", "-l", "snapshot.id=" + id, image.toString(), raw + "");
    byte[] b = Files.readAllBytes(raw);
    Files.delete(raw);
    return b;
  }

  /** "ID NAME" of each snapshot (qemu-img snapshot -l), and the disk's size (qemu-img info). */
  private static String list(Path image) throws IOException {
    String json = Qemu.img(image.getParent(), "info", "--output=json", image.toString());
    java.util.regex.Matcher m =
        java.util.regex.Pattern.compile("\"virtual-size\": (\\d+)").matcher(json);
    String size = m.find() ? m.group(1) : "?";
    return String.join("\n", Qemu.snapshots(image)) + "\nsize " + size + "\n";
  }

  @ParameterizedTest(name = "[{index}] {0}")
  @ValueSource(
      strings = {
        "-o cluster_size=65536",
        "-o cluster_size=512",
        "-o extended_l2=on",
        "-o compat=0.10",
        "-o refcount_bits=64,lazy_refcounts=on"
      })
  void createApplyDeleteAsQemuImg(String opts) throws IOException {
    build(opts);
    both("-c", "s1");
    same("-c s1");
    write("write -q -P 9 512k 1M", "write -q -P 8 2M 4k", "discard -q 5M 64k");
    both("-c", "s2");
    both("-c", "s2"); // names may repeat
    same("-c s2 twice");
    write("write -q -P 7 0 64k");
    both("-a", "s1");
    same("-a s1");
    write("write -q -P 6 6M 1M");
    both("-d", "s1");
    same("-d s1");
    both("-a", "2");
    same("-a 2 (an ID)");
    both("-d", "s2");
    both("-d", "s2");
    same("-d s2 twice");
    both("-c", "");
    same("-c with an empty name");
  }

  @Test
  void applyRestoresTheSnapshotsSize() throws IOException {
    build("-o cluster_size=65536");
    both("-c", "small");
    Qemu.img(dir, "resize", "-q", "ours.qcow2", "20M");
    Qemu.img(dir, "resize", "-q", "theirs.qcow2", "20M");
    write("write -q -P 4 15M 1M");
    both("-c", "large");
    both("-a", "small");
    same("-a small");
    both("-a", "large");
    same("-a large");
  }

  @Test
  void refusesAsQemuImgAndChangesNothing() throws IOException {
    build("-o cluster_size=65536");
    both("-c", "s1");
    byte[] before = Files.readAllBytes(ours);
    both("-d", "nosuch");
    both("-a", "nosuch");
    both("-d", "1"); // -d takes a name only
    assertArrayEquals(before, Files.readAllBytes(ours));
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "refcount_bits=1", "r1.qcow2", "4M");
    Qemu.io(dir, "r1.qcow2", "write -q -P 1 0 1M");
    byte[] r1 = Files.readAllBytes(dir.resolve("r1.qcow2"));
    DifferentialTest.Run r = DifferentialTest.cli("snapshot", "-c", "a", dir + "/r1.qcow2");
    assertEquals(1, r.code());
    assertEquals("jqcowfs: Could not create snapshot 'a': -22 (Invalid argument)", r.err().strip());
    assertArrayEquals(r1, Files.readAllBytes(dir.resolve("r1.qcow2")), "nothing written");
  }
}
