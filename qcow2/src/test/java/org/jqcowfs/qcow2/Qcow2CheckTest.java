package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.qcow2.testing.Poke;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * {@link Qcow2Check} against {@code qemu-img check}: on clean images of every kind and on images
 * whose refcounts, COPIED flags and entries were poked, the same counts, the same image end offset
 * and cluster statistics, the same messages and the same exit status.
 */
class Qcow2CheckTest {
  @TempDir Path dir;

  enum Case {
    CLEAN_WITH_SNAPSHOTS,
    V2,
    REFCOUNT_BITS_1,
    REFCOUNT_BITS_64,
    EXTENDED_L2,
    DATA_FILE,
    ZSTD_COMPRESSED,
    LEAKED_CLUSTER,
    DATA_CLUSTER_REFCOUNT_0,
    DATA_CLUSTER_REFCOUNT_2,
    L2_RESERVED_BIT,
    L1_COPIED_CLEARED,
    SNAPSHOT_SHARED_REFCOUNT_1,
  }

  @ParameterizedTest
  @EnumSource(Case.class)
  void answersAsQemuImgCheck(Case c) throws Exception {
    Path image = build(c);
    Qemu.Check want = qemuCheck(image);
    List<String> messages = new ArrayList<>();
    Qcow2Check.Result got = Qcow2Check.check(image, messages::add);
    assertEquals(
        want.exitStatus(), got.exitStatus(), c + ": exit status; qemu said " + want.stderr());
    assertEquals(want.number("corruptions"), got.corruptions(), c + ": corruptions");
    assertEquals(want.number("leaks"), got.leaks(), c + ": leaks");
    assertEquals(want.number("check-errors"), got.checkErrors(), c + ": check errors");
    assertEquals(want.number("image-end-offset"), got.imageEndOffset(), c + ": image end");
    assertEquals(want.number("total-clusters"), got.totalClusters(), c + ": total clusters");
    assertEquals(
        want.number("allocated-clusters"), got.allocatedClusters(), c + ": allocated clusters");
    assertEquals(want.number("fragmented-clusters"), got.fragmentedClusters(), c + ": fragmented");
    assertEquals(want.number("compressed-clusters"), got.compressedClusters(), c + ": compressed");
    assertEquals(want.messages(), messages, c + ": messages");
    if (c.name().startsWith("CLEAN") || c.ordinal() < Case.LEAKED_CLUSTER.ordinal()) {
      assertEquals(0, got.exitStatus(), c + " is clean");
    } else {
      assertTrue(got.exitStatus() != 0, c + " has a finding, so the comparison meant something");
    }
  }

  /**
   * {@link Qcow2Check#repair} against {@code qemu-img check -r}: on a copy each, the same leaks and
   * corruptions fixed, the same exit status after, QEMU's own check of our repaired copy as clean
   * as of its own, and the disk's content unchanged.
   */
  @ParameterizedTest
  @EnumSource(
      value = Case.class,
      names = {
        "CLEAN_WITH_SNAPSHOTS",
        "LEAKED_CLUSTER",
        "DATA_CLUSTER_REFCOUNT_0",
        "DATA_CLUSTER_REFCOUNT_2",
        "L1_COPIED_CLEARED",
        "SNAPSHOT_SHARED_REFCOUNT_1"
      })
  void repairsAsQemuImgCheck(Case c) throws Exception {
    Path image = build(c);
    for (String mode : List.of("leaks", "all")) {
      Path ours = dir.resolve("ours-" + mode + ".qcow2");
      Path theirs = dir.resolve("theirs-" + mode + ".qcow2");
      Files.copy(image, ours);
      Files.copy(image, theirs);
      Qemu.Check want = Qemu.repair(theirs, mode);
      String what = c + " -r " + mode + ": ";
      if (want.exitStatus() == 1) { // "need to rebuild refcount structures": -r leaks refuses
        assertThrows(
            IOException.class, () -> Qcow2Check.repair(ours, mode.equals("all"), line -> {}));
        assertEquals(0, Qemu.compare(ours, theirs).exitStatus(), what + "content");
        continue;
      }
      Qcow2Check.Repair got = Qcow2Check.repair(ours, mode.equals("all"), line -> {});
      assertEquals(want.number("leaks-fixed"), got.leaksFixed(), what + "leaks fixed");
      assertEquals(
          want.number("corruptions-fixed"), got.corruptionsFixed(), what + "corruptions fixed");
      assertEquals(want.exitStatus(), got.after().exitStatus(), what + "exit status after");
      assertEquals(
          Qemu.check(theirs).exitStatus(), Qemu.check(ours).exitStatus(), what + "QEMU's check");
      assertEquals(0, Qemu.compare(ours, theirs).exitStatus(), what + "content");
    }
  }

  /** The image of {@code c}, made by qemu-img and qemu-io, then poked. */
  private Path build(Case c) throws IOException {
    Path image = dir.resolve("t.qcow2");
    String opts =
        switch (c) {
          case V2 -> "compat=0.10";
          case REFCOUNT_BITS_1 -> "refcount_bits=1";
          case REFCOUNT_BITS_64 -> "refcount_bits=64";
          case EXTENDED_L2 -> "extended_l2=on,cluster_size=128k";
          case DATA_FILE -> "data_file=t.data";
          case ZSTD_COMPRESSED -> "compression_type=zstd";
          default -> "cluster_size=65536";
        };
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", opts, "t.qcow2", "64M");
    List<String> writes = new ArrayList<>(List.of("write -q -P 1 0 200k", "write -q -z 4M 64k"));
    if (c != Case.DATA_FILE) {
      writes.add("write -q -c -P 2 8M " + (c == Case.EXTENDED_L2 ? "128k" : "64k"));
    }
    writes.add("write -q -P 3 16M 4k");
    Qemu.io(dir, "t.qcow2", writes.toArray(String[]::new));
    if (c == Case.CLEAN_WITH_SNAPSHOTS || c == Case.SNAPSHOT_SHARED_REFCOUNT_1) {
      Qemu.img(dir, "snapshot", "-c", "one", "t.qcow2");
      Qemu.io(dir, "t.qcow2", "write -q -P 4 0 64k");
      Qemu.img(dir, "snapshot", "-c", "two", "t.qcow2");
    }
    Poke p = new Poke(image);
    switch (c) {
      case LEAKED_CLUSTER -> {
        long end = Files.size(image);
        long cluster = (end + 65535) / 65536;
        try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
          ch.write(ByteBuffer.allocate(1), (cluster + 1) * 65536 - 1); // one nothing references
        }
        p.setRefcount16(cluster, 1);
      }
      case DATA_CLUSTER_REFCOUNT_0 -> p.setRefcount16(p.dataCluster(16L << 20), 0);
      case DATA_CLUSTER_REFCOUNT_2 -> p.setRefcount16(p.dataCluster(16L << 20), 2);
      case L2_RESERVED_BIT -> p.orL2Entry(16L << 20, 1L << 60);
      case L1_COPIED_CLEARED -> p.setL1(0, p.l1(0) & ~(1L << 63));
      case SNAPSHOT_SHARED_REFCOUNT_1 -> p.setRefcount16(p.dataCluster(65536), 1);
      default -> {}
    }
    return image;
  }

  private Qemu.Check qemuCheck(Path image) throws IOException {
    return Qemu.check(image);
  }
}
