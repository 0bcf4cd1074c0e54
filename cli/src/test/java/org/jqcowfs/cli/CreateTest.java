package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code jqcowfs create} against {@code qemu-img create} with the same arguments: the same
 * "Formatting" line and the same file, byte for byte; {@code qemu-img check} finds it clean.
 */
class CreateTest {
  @TempDir Path dir;

  @ParameterizedTest
  @ValueSource(
      strings = {
        "1G",
        "-o cluster_size=4096 1G",
        "-o cluster_size=512 64M",
        "-o cluster_size=2M 100G",
        "-o compat=0.10 10G",
        "-o extended_l2=on 1G",
        "-o extended_l2=on,cluster_size=2M 1T",
        "-o compression_type=zstd,lazy_refcounts=on 1G",
        "-o refcount_bits=1 1G",
        "-o refcount_bits=64 4G",
        "-o data_file=DATA.raw 1G",
        "-b base.qcow2 -F qcow2",
        "-b base.raw -F raw 2G",
        "-o cluster_size=65536 1536",
        "0",
        "-o preallocation=metadata 100M",
        "-o preallocation=metadata,cluster_size=4096,extended_l2=off 70M",
        "-o preallocation=metadata,compat=0.10 30M",
      })
  void writesTheImageQemuImgWrites(String args) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "base.qcow2", "3G");
    Qemu.img(dir, "create", "-q", "-f", "raw", "base.raw", "1G");
    List<String> words = new ArrayList<>(Arrays.asList(args.split(" ")));
    List<String> qemuArgs = new ArrayList<>(List.of("create", "-f", "qcow2"));
    List<String> ourArgs = new ArrayList<>(List.of("create", "-f", "qcow2"));
    // the image's name comes before the size; both tools get their own file
    int at = words.get(words.size() - 1).matches("[0-9].*") ? words.size() - 1 : words.size();
    qemuArgs.addAll(words.subList(0, at));
    ourArgs.addAll(words.subList(0, at));
    qemuArgs.add(dir.resolve("qemu.qcow2").toString());
    ourArgs.add(dir.resolve("ours.qcow2").toString());
    qemuArgs.addAll(words.subList(at, words.size()));
    ourArgs.addAll(words.subList(at, words.size()));
    String qemuOut =
        Qemu.img(dir, qemuArgs.stream().map(a -> a.replace("DATA", "qemu")).toArray(String[]::new));
    DifferentialTest.Run ours =
        DifferentialTest.cli(
            ourArgs.stream().map(a -> a.replace("DATA", "ours")).toArray(String[]::new));
    assertEquals(0, ours.code(), ours.err());
    assertEquals(
        qemuOut.replace("qemu.qcow2", "ours.qcow2").replace("qemu.raw", "ours.raw"),
        ours.out(),
        "the Formatting line");
    // the header names each tool's own data file (names of the same length)
    byte[] want =
        new String(Files.readAllBytes(dir.resolve("qemu.qcow2")), StandardCharsets.ISO_8859_1)
            .replace("qemu.raw", "ours.raw")
            .getBytes(StandardCharsets.ISO_8859_1);
    byte[] got = Files.readAllBytes(dir.resolve("ours.qcow2"));
    assertArrayEquals(want, got, "the image bytes");
    if (args.contains("data_file")) {
      assertEquals(
          Files.size(dir.resolve("qemu.raw")), Files.size(dir.resolve("ours.raw")), "data file");
    }
    String check = Qemu.img(dir, "check", "ours.qcow2");
    assertTrue(check.startsWith("No errors were found on the image."), check);
  }

  /**
   * An L1 table that needs many refcount blocks (4 GiB of 512-byte clusters with 64-bit refcounts:
   * 2048 clusters of L1 table, 64 refcounts per block): the layout differs from QEMU's (see {@link
   * org.jqcowfs.qcow2.Qcow2Create}), the image is as valid and QEMU sees the same disk.
   */
  @ParameterizedTest
  @ValueSource(
      strings = {
        "-o refcount_bits=64,cluster_size=512 4G",
        "-o cluster_size=512 20G",
        "-o preallocation=falloc 100M",
        "-o preallocation=full,cluster_size=4096 60M",
        "-o preallocation=metadata,extended_l2=on 300M",
      })
  void anImageWithManyRefcountBlocksIsValid(String args) throws Exception {
    List<String> words = new ArrayList<>(Arrays.asList(args.split(" ")));
    List<String> ourArgs = new ArrayList<>(List.of("create", "-q"));
    ourArgs.addAll(words.subList(0, words.size() - 1));
    ourArgs.add(dir.resolve("ours.qcow2").toString());
    ourArgs.add(words.get(words.size() - 1));
    DifferentialTest.Run ours = DifferentialTest.cli(ourArgs.toArray(String[]::new));
    assertEquals(0, ours.code(), ours.err());
    String check = Qemu.img(dir, "check", "ours.qcow2");
    assertTrue(check.startsWith("No errors were found on the image."), check);
    List<String> qemuArgs = new ArrayList<>(List.of("create", "-q", "-f", "qcow2"));
    qemuArgs.addAll(words.subList(0, words.size() - 1));
    qemuArgs.add("qemu.qcow2");
    qemuArgs.add(words.get(words.size() - 1));
    Qemu.img(dir, qemuArgs.toArray(String[]::new));
    String want = Qemu.img(dir, "info", "qemu.qcow2").replace("qemu.qcow2", "ours.qcow2");
    String got = Qemu.img(dir, "info", "ours.qcow2");
    assertEquals(withoutDiskSize(want), withoutDiskSize(got), "qemu-img info");
  }

  private static String withoutDiskSize(String info) {
    return info.replaceAll("(?m)^disk size:.*$", "");
  }
}
