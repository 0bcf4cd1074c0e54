package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Holes wherever the disk reads as zero: metadata-preallocated images (every cluster has a host
 * offset, QEMU's map says "data": true, "zero": true for the host holes), zero clusters that keep
 * their allocation, and a preallocated layer over a backing file with data. The SEEK_DATA/SEEK_HOLE
 * walk finds exactly the ranges QEMU's view holds as non-zero, {@code cp --sparse=always} reads
 * only those (the mount's read counter, with the kernel's readahead off so that it counts what cp
 * asked for), its copy equals {@code qemu-img convert}, and st_blocks becomes exact.
 */
class SparseEverywhereIT {
  private static final long MIB = 1 << 20;

  /** Builds the case's image in {@code dir} with qemu-img and qemu-io; returns it. */
  static Path build(Path dir, String kind) throws Exception {
    switch (kind) {
      case "prealloc-64k", "prealloc-2m" -> {
        String cluster = kind.endsWith("64k") ? "64k" : "2M";
        Qemu.img(
            dir,
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "preallocation=metadata,cluster_size=" + cluster,
            "p.qcow2",
            "1G");
        Qemu.io(
            dir,
            "p.qcow2",
            "write -q -P 5 4M 24M",
            "write -q -P 6 700M 2M",
            "write -q -P 7 900M 10M",
            "write -q -z 900M 4M", // zeroes over written clusters, allocation kept
            "write -q -P 8 960M 64M");
        return dir.resolve("p.qcow2");
      }
      case "prealloc-extl2" -> {
        Qemu.img(
            dir,
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "preallocation=metadata,cluster_size=64k,extended_l2=on",
            "x.qcow2",
            "1G");
        Qemu.io(
            dir,
            "x.qcow2",
            "write -q -P 5 8M 16M",
            "write -q -P 6 300M 4k", // one subcluster of 2 KiB each... some subclusters written
            "write -q -P 7 301M 10k",
            "write -q -P 8 1000M 24M");
        return dir.resolve("x.qcow2");
      }
      case "zero-alloc" -> {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "z.qcow2", "1G");
        Qemu.io(
            dir,
            "z.qcow2",
            "write -q -P 5 0 64M",
            "write -q -z 8M 16M", // ZERO_ALLOC: the clusters stay allocated
            "write -q -z -u 40M 8M", // unmapped zeros
            "write -q -P 6 900M 32M");
        return dir.resolve("z.qcow2");
      }
      case "prealloc-over-backing" -> {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "base.qcow2", "1G");
        Qemu.io(dir, "base.qcow2", "write -q -P 3 0 32M", "write -q -P 4 512M 16M");
        Qemu.img(
            dir,
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "-o",
            "preallocation=metadata,extended_l2=on,cluster_size=64k",
            "top.qcow2",
            "1G");
        Qemu.io(
            dir,
            "top.qcow2",
            "write -q -P 5 16M 32M",
            "write -q -z 520M 4M",
            "write -q -P 6 800M 8M");
        return dir.resolve("top.qcow2");
      }
      default -> throw new IllegalArgumentException(kind);
    }
  }

  @ParameterizedTest(name = "{0}")
  @ValueSource(
      strings = {
        "prealloc-64k",
        "prealloc-2m",
        "prealloc-extl2",
        "zero-alloc",
        "prealloc-over-backing"
      })
  void holesWhereverTheDiskReadsAsZero(String kind, @TempDir Path dir) throws Exception {
    Path image = build(dir, kind);
    List<List<Long>> want = Holes.qemu(image);
    long data = Holes.bytes(want);
    long allData = Holes.bytes(Holes.qemuDataFlag(image));
    assertTrue(data > 0, "the image holds data");
    if (kind.equals("prealloc-64k") || kind.equals("prealloc-2m")) {
      assertTrue(allData > 2 * data, "QEMU's map calls the preallocated zeros data: " + allData);
    }
    Path reference = Qemu.convertRaw(image, dir.resolve("qemu.raw"), null);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path copy = dir.resolve("copy.raw");
    String name = image.getFileName().toString().replace(".qcow2", ".raw");
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString())) {
      Path flat = m.file(name);
      assertEquals(want, Holes.walk(flat), "SEEK walk against QEMU's non-zero ranges");

      setReadahead(mnt, 0);
      long before = SparseCopyIT.readBytes(mnt);
      Jqcowfs.Run cp =
          Jqcowfs.exec(List.of("cp", "--sparse=always", flat.toString(), copy.toString()));
      assertEquals(0, cp.code(), cp.err());
      long read = SparseCopyIT.readBytes(mnt) - before;
      System.out.printf("%s: cp read %d bytes for %d bytes of data%n", kind, read, data);
      assertTrue(read >= data && read <= data * 11 / 10, "read " + read + " for " + data);

      long blocks = (data + 511) / 512;
      long deadline = System.nanoTime() + 30_000_000_000L;
      while (stBlocks(flat) != blocks && System.nanoTime() < deadline) {
        Thread.sleep(100);
      }
      assertEquals(blocks, stBlocks(flat), "st_blocks once the walk is done");
    }
    Jqcowfs.Run cmp = Jqcowfs.exec(List.of("cmp", reference.toString(), copy.toString()));
    assertEquals(0, cmp.code(), "copy differs from qemu-img convert: " + cmp.out());

    Path converted = dir.resolve("convert.raw");
    Jqcowfs.Run convert = Jqcowfs.run("convert", image.toString(), converted.toString());
    assertEquals(0, convert.code(), convert.err());
    cmp = Jqcowfs.exec(List.of("cmp", reference.toString(), converted.toString()));
    assertEquals(0, cmp.code(), "jqcowfs convert differs from qemu-img convert: " + cmp.out());
    try (org.jqcowfs.io.PosixStorage f =
        org.jqcowfs.io.PosixStorage.open(converted, org.jqcowfs.io.HostFileOptions.DEFAULT)) {
      assertTrue(
          f.allocatedBytes() <= data + 4 * MIB, "convert wrote holes: " + f.allocatedBytes());
    }
  }

  /** A 1 TiB metadata-preallocated image mounts without a walk; st_blocks is exact later. */
  @Test
  void aLargePreallocatedImageMountsAtOnce(@TempDir Path dir) throws Exception {
    Qemu.img(
        dir,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "preallocation=metadata,cluster_size=64k",
        "big.qcow2",
        "1T");
    Qemu.io(dir, "big.qcow2", "write -q -P 1 0 1M", "write -q -P 2 1000G 2M");
    Path image = dir.resolve("big.qcow2");
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    long t0 = System.nanoTime();
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString())) {
      long readyMillis = (System.nanoTime() - t0) / 1_000_000;
      Path flat = m.file("big.raw");
      long first = stBlocks(flat);
      long deadline = System.nanoTime() + 120_000_000_000L;
      while (stBlocks(flat) != 3 * MIB / 512 && System.nanoTime() < deadline) {
        Thread.sleep(200);
      }
      long exactMillis = (System.nanoTime() - t0) / 1_000_000;
      System.out.printf(
          "1 TiB preallocated: mount ready %d ms (st_blocks %d), exact %d ms%n",
          readyMillis, first, exactMillis);
      assertEquals(3 * MIB / 512, stBlocks(flat), "st_blocks exact once the walk is done");
      assertTrue(first * 512 < (1L << 40), "the first st_blocks is a bound below st_size");
      assertEquals(
          List.of(List.of(0L, MIB), List.of(1000L << 30, (1000L << 30) + 2 * MIB)),
          Holes.walk(flat));
    }
  }

  static long stBlocks(Path f) throws Exception {
    Jqcowfs.Run r = Jqcowfs.exec(List.of("stat", "-c", "%b", f.toString()));
    assertEquals(0, r.code(), r.err());
    return Long.parseLong(r.out().trim());
  }

  /** Sets the mount's readahead (its bdi, named by the mount's device number). */
  static void setReadahead(Path mnt, int kib) throws Exception {
    long dev = ((Number) Files.getAttribute(mnt, "unix:dev")).longValue();
    long major = (dev >>> 8) & 0xfff;
    long minor = (dev & 0xff) | ((dev >>> 12) & 0xfff00);
    Path knob = Path.of("/sys/class/bdi/" + major + ":" + minor + "/read_ahead_kb");
    Files.writeString(knob, Integer.toString(kib));
  }
}
