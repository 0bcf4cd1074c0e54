package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.jqcowfs.image.Image;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.raw.RawImage;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Writes against qemu-io: the same seeded sequence of writes, write-zeroes (with and without
 * unmap), discards and flushes, unaligned and overlapping, 512 B to 4 MiB, applied by {@link
 * Qcow2Image#write} to one copy of an image and by {@code qemu-io} to another. Then {@code qemu-img
 * compare} must call the two identical, {@code qemu-img check} must find neither corruption nor
 * leak in ours, and every internal snapshot must read as QEMU's copy reads it.
 */
class Qcow2WriteTest {
  @TempDir Path dir;

  /** An image kind: its creation options and what qemu-io puts into it first. */
  enum Case {
    V3_64K("cluster_size=64k"),
    V2("compat=0.10"),
    CLUSTER_512("cluster_size=512"),
    CLUSTER_4K("cluster_size=4k"),
    CLUSTER_2M("cluster_size=2M"),
    EXTENDED_L2("extended_l2=on,cluster_size=64k"),
    COMPRESSED("cluster_size=64k"),
    ZERO_CLUSTERS("cluster_size=64k"),
    SNAPSHOTS("cluster_size=64k"),
    BACKING_QCOW2("cluster_size=64k"),
    BACKING_RAW_SHORTER("cluster_size=4k"),
    CHAIN_3("extended_l2=on,cluster_size=32k"),
    REFCOUNT_BITS_1("refcount_bits=1,cluster_size=4k"),
    REFCOUNT_BITS_64("refcount_bits=64"),
    LAZY_REFCOUNTS("lazy_refcounts=on"),
    PREALLOCATED_METADATA("preallocation=metadata"),
    /**
     * v2 over a backing file: no zero flag, so a discarded cluster reads the backing file again.
     */
    V2_BACKING("compat=0.10");

    final String options;

    Case(String options) {
      this.options = options;
    }
  }

  static final long SIZE = 48L << 20;

  @ParameterizedTest
  @EnumSource(Case.class)
  void writesAsQemuIo(Case c) throws Exception {
    Path base = prepare(dir, c);
    Path ours = Files.copy(base, dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(base, dir.resolve("theirs.qcow2"));
    List<String> snapshotsBefore = snapshotHashes(theirs);
    Random random = new Random(c.ordinal() * 7919L + 17);
    List<String> commands = new ArrayList<>();
    try (Qcow2Image image = openWritable(ours);
        Image backing = openBacking(dir, c)) {
      image.setBacking(backing);
      for (int op = 0; op < 40; op++) {
        if (random.nextInt(8) == 0) {
          image.flush();
          commands.add("flush");
          continue;
        }
        long length = randomLength(random);
        long offset = randomOffset(random, length);
        int kind = random.nextInt(10);
        if (kind == 0) {
          image.writeZeroes(offset, length, false);
          commands.add("write -q -z " + offset + " " + length);
        } else if (kind == 1) {
          image.writeZeroes(offset, length, true);
          commands.add("write -q -z -u " + offset + " " + length);
        } else if (kind == 2) {
          image.discard(offset, length);
          commands.add("discard -q " + offset + " " + length);
        } else {
          int pattern = 1 + op % 254;
          ByteBuffer data = ByteBuffer.allocate((int) length);
          java.util.Arrays.fill(data.array(), (byte) pattern);
          image.write(data, offset);
          assertEquals(length, data.position(), "the write consumed its buffer");
          commands.add("write -q -P " + pattern + " " + offset + " " + length);
        }
      }
    }
    assertAsQemuIo(c, ours, theirs, commands);
    assertEquals(snapshotsBefore, snapshotHashes(ours), c + ": snapshots unchanged");
  }

  /**
   * A punched hole ({@link Qcow2Image#punchHole}: discard where a discarded cluster reads as zeros,
   * write-zeroes around it) reads as qemu-io's write-zeroes with unmap makes it read, amid writes.
   */
  @ParameterizedTest
  @EnumSource(Case.class)
  void punchedHolesReadAsQemuIoZeroes(Case c) throws Exception {
    Path base = prepare(dir, c);
    Path ours = Files.copy(base, dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(base, dir.resolve("theirs.qcow2"));
    Random random = new Random(c.ordinal() * 6133L + 5);
    List<String> commands = new ArrayList<>();
    try (Qcow2Image image = openWritable(ours);
        Image backing = openBacking(dir, c)) {
      image.setBacking(backing);
      for (int op = 0; op < 30; op++) {
        long length = randomLength(random);
        long offset = randomOffset(random, length);
        if (random.nextInt(3) == 0) {
          int pattern = 1 + op % 254;
          ByteBuffer data = ByteBuffer.allocate((int) length);
          java.util.Arrays.fill(data.array(), (byte) pattern);
          image.write(data, offset);
          commands.add("write -q -P " + pattern + " " + offset + " " + length);
        } else {
          image.punchHole(offset, length);
          commands.add("write -q -z -u " + offset + " " + length);
        }
      }
    }
    assertAsQemuIo(c, ours, theirs, commands);
  }

  /**
   * Punching or zeroing a piece of a cluster that reads as zeros already allocates nothing (QEMU's
   * {@code is_zero} in {@code qcow2_co_pwrite_zeroes}): mkfs.ext4's first probe, a 4 KiB discard of
   * an empty disk, allocated a cluster and an L2 table. The file keeps its length, {@code qemu-img
   * map} still shows no data, and a piece over a backing file's data is still zeroed.
   */
  @Test
  void zeroingWhatReadsAsZerosAllocatesNothing() throws Exception {
    Path empty = dir.resolve("empty.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", empty.toString(), "4M");
    long bytesBefore = Files.size(empty);
    String mapBefore = Qemu.mapJson(empty);
    try (Qcow2Image image = openWritable(empty)) {
      image.punchHole(0, 4096);
      image.punchHole(70_000, 1000);
      image.writeZeroes(200_000, 5000, false);
      image.writeZeroes((1 << 20) + 100, 60_000, true);
    }
    assertEquals(bytesBefore, Files.size(empty), "no cluster or table allocated");
    assertEquals(mapBefore, Qemu.mapJson(empty), "qemu-img map");
    assertEquals(0, Qemu.check(empty).exitStatus(), "qemu-img check");

    Path base = dir.resolve("base.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", base.toString(), "4M");
    Qemu.io(dir, base.toString(), "write -q -P 7 0 1M");
    Path ours = dir.resolve("ours.qcow2");
    Qemu.img(
        dir, "create", "-q", "-f", "qcow2", "-b", base.toString(), "-F", "qcow2", ours.toString());
    Path theirs = Files.copy(ours, dir.resolve("theirs.qcow2"));
    try (Qcow2Image image = openWritable(ours);
        Image backing = Qcow2Image.open(base, Qcow2Options.DEFAULT)) {
      image.setBacking(backing);
      image.punchHole(4096, 4096);
      image.writeZeroes(70_000, 1000, false);
    }
    assertAsQemuIo(
        "overlay over data",
        ours,
        theirs,
        List.of("write -q -z -u 4096 4096", "write -q -z 70000 1000"));
  }

  /**
   * With extended L2 entries only the written subclusters are allocated, the partly written ones
   * copied (QEMU {@code calculate_l2_meta}, {@code qcow2_alloc_cluster_link_l2}): after the same
   * unaligned writes into an overlay over a backing file, {@code qemu-img map} (without host
   * offsets) is QEMU's, subcluster for subcluster.
   */
  @ParameterizedTest
  @EnumSource(
      value = Case.class,
      names = {"EXTENDED_L2", "CHAIN_3"})
  void subclustersAllocateAsQemu(Case c) throws Exception {
    Path base = prepare(dir, c);
    Path ours = Files.copy(base, dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(base, dir.resolve("theirs.qcow2"));
    Random random = new Random(99);
    List<String> commands = new ArrayList<>();
    try (Qcow2Image image = openWritable(ours);
        Image backing = openBacking(dir, c)) {
      image.setBacking(backing);
      for (int op = 0; op < 30; op++) {
        long length = 1 + random.nextInt(random.nextBoolean() ? 3000 : 200_000);
        long offset = (long) (random.nextDouble() * (SIZE - length));
        ByteBuffer data = ByteBuffer.allocate((int) length);
        java.util.Arrays.fill(data.array(), (byte) (op + 1));
        image.write(data, offset);
        commands.add("write -q -P " + (op + 1) + " " + offset + " " + length);
        if (op == 15) { // a cluster written whole, then partly: in place, bitmap widened
          image.flush();
          commands.add("flush");
        }
      }
    }
    assertAsQemuIo(c, ours, theirs, commands);
    assertEquals(
        withoutOffsets(Qemu.mapJson(theirs)), withoutOffsets(Qemu.mapJson(ours)), c + ": map");
  }

  /**
   * Write-zeroes with extended L2 entries, aligned to subclusters as QEMU aligns them ({@code
   * qcow2_co_pwrite_zeroes}, {@code zero_l2_subclusters}): a partly covered cluster gets zero bits
   * for its whole subclusters, a piece of a subcluster gets its zero bit when the rest reads as
   * zeros and no data is there, else zero data. After the same data writes and write-zeroes (with
   * and without unmap, unaligned, 1 byte to 300 KB), {@code qemu-img map} is QEMU's.
   */
  @ParameterizedTest
  @EnumSource(
      value = Case.class,
      names = {"EXTENDED_L2", "CHAIN_3"})
  void subclusterZeroesAsQemu(Case c) throws Exception {
    Path base = prepare(dir, c);
    Path ours = Files.copy(base, dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(base, dir.resolve("theirs.qcow2"));
    Random random = new Random(7);
    List<String> commands = new ArrayList<>();
    try (Qcow2Image image = openWritable(ours);
        Image backing = openBacking(dir, c)) {
      image.setBacking(backing);
      for (int op = 0; op < 40; op++) {
        long length = 1 + random.nextInt(random.nextBoolean() ? 5000 : 300_000);
        long offset = (long) (random.nextDouble() * (SIZE - length));
        if (op % 3 == 0) {
          ByteBuffer data = ByteBuffer.allocate((int) length);
          java.util.Arrays.fill(data.array(), (byte) (op + 1));
          image.write(data, offset);
          commands.add("write -q -P " + (op + 1) + " " + offset + " " + length);
        } else {
          boolean unmap = op % 3 == 2;
          image.writeZeroes(offset, length, unmap);
          commands.add("write -q -z " + (unmap ? "-u " : "") + offset + " " + length);
        }
      }
    }
    assertAsQemuIo(c, ours, theirs, commands);
    assertEquals(
        withoutOffsets(Qemu.mapJson(theirs)), withoutOffsets(Qemu.mapJson(ours)), c + ": map");
  }

  /**
   * The map's status without host offsets: neighbours that differed only in where their data lies
   * in the file (allocation order, not status) are merged.
   */
  private static String withoutOffsets(String mapJson) {
    java.util.regex.Pattern entry =
        java.util.regex.Pattern.compile(
            "\"start\": (\\d+), \"length\": (\\d+), (.*?)(, \"offset\": \\d+)?}");
    StringBuilder out = new StringBuilder();
    long start = -1;
    long end = -1;
    String status = null;
    java.util.regex.Matcher m = entry.matcher(mapJson);
    while (m.find()) {
      long s = Long.parseLong(m.group(1));
      long e = s + Long.parseLong(m.group(2));
      if (m.group(3).equals(status) && s == end) {
        end = e;
        continue;
      }
      if (status != null) {
        out.append(start).append('+').append(end - start).append(' ').append(status).append('\n');
      }
      start = s;
      end = e;
      status = m.group(3);
    }
    return out.append(start).append('+').append(end - start).append(' ').append(status).toString();
  }

  /**
   * A lazy-refcounts image that QEMU left dirty (qemu-io's {@code abort} after writes: refcounts
   * never written) has its refcounts rebuilt when opened for writing, as QEMU does: after our
   * writes, {@code qemu-img check} is clean, the dirty bit is clear, and the content equals qemu-io
   * doing the same on a copy.
   */
  @org.junit.jupiter.api.Test
  void dirtyLazyRefcountImageIsRepairedOnOpen() throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "lazy_refcounts=on", "d.qcow2", "64M");
    try {
      Qemu.io(dir, "d.qcow2", "write -q -P 1 0 1M", "write -q -P 2 8M 200k", "abort");
    } catch (IOException expected) {
      // qemu-io's abort: the process dies with SIGABRT, the image stays dirty
    }
    Path ours = dir.resolve("d.qcow2");
    Path theirs = Files.copy(ours, dir.resolve("theirs.qcow2"));
    assertEquals(2, Qemu.check(ours).exitStatus(), "the dirty image's refcounts are stale");
    try (Qcow2Image image = openWritable(ours)) {
      image.write(ByteBuffer.wrap(new byte[] {9, 9, 9}), 5L << 20);
    }
    Qemu.io(dir, theirs.toString(), "write -q -P 9 " + (5L << 20) + " 3");
    Qemu.Check check = Qemu.check(ours);
    assertEquals(0, check.exitStatus(), "repaired: " + check.stderr());
    assertEquals(0, Qemu.compare(ours, theirs).exitStatus(), "content");
    assertTrue(Qemu.img(dir, "info", ours.toString()).contains("corrupt: false"));
    assertEquals(0, ByteBuffer.wrap(Files.readAllBytes(ours)).getLong(72) & 1, "dirty bit clear");
  }

  /**
   * Eight threads, each with its own seeded sequence inside its own eighth of the disk; the eighths
   * are not cluster-aligned, so neighbours allocate the clusters they share at the same time.
   */
  @ParameterizedTest
  @EnumSource(
      value = Case.class,
      names = {"V3_64K", "CLUSTER_512", "EXTENDED_L2", "COMPRESSED", "SNAPSHOTS", "CHAIN_3"})
  void eightThreadsOnDisjointRanges(Case c) throws Exception {
    Path base = prepare(dir, c);
    Path ours = Files.copy(base, dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(base, dir.resolve("theirs.qcow2"));
    int threads = 8;
    long slice = SIZE / threads - 12345;
    List<List<String>> commands = new ArrayList<>();
    try (Qcow2Image image = openWritable(ours);
        Image backing = openBacking(dir, c)) {
      image.setBacking(backing);
      List<java.util.concurrent.Future<List<String>>> done = new ArrayList<>();
      java.util.concurrent.ExecutorService pool =
          java.util.concurrent.Executors.newFixedThreadPool(threads);
      try {
        for (int t = 0; t < threads; t++) {
          long start = 7 + t * slice;
          Random random = new Random(c.ordinal() * 131L + t);
          done.add(pool.submit(() -> runSlice(image, random, start, slice)));
        }
        for (java.util.concurrent.Future<List<String>> f : done) {
          commands.add(f.get());
        }
      } finally {
        pool.shutdown();
      }
    }
    List<String> all = new ArrayList<>();
    commands.forEach(all::addAll);
    assertAsQemuIo(c, ours, theirs, all);
  }

  /**
   * Eight threads writing interleaved 512-byte pieces of the same clusters at once: every piece
   * allocates or waits for the allocation of its cluster ({@code handle_dependencies}), and none
   * may be lost.
   */
  @ParameterizedTest
  @EnumSource(
      value = Case.class,
      names = {"V3_64K", "EXTENDED_L2", "COMPRESSED", "BACKING_QCOW2"})
  void eightThreadsInTheSameClusters(Case c) throws Exception {
    Path base = prepare(dir, c);
    Path ours = Files.copy(base, dir.resolve("ours.qcow2"));
    Path theirs = Files.copy(base, dir.resolve("theirs.qcow2"));
    int threads = 8;
    List<String> commands = new ArrayList<>();
    try (Qcow2Image image = openWritable(ours);
        Image backing = openBacking(dir, c)) {
      image.setBacking(backing);
      java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(threads);
      List<Thread> workers = new ArrayList<>();
      List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
      for (int t = 0; t < threads; t++) {
        int thread = t;
        workers.add(
            new Thread(
                () -> {
                  try {
                    start.await();
                    for (int k = 0; k < 200; k++) {
                      long offset = (8L << 20) + k * 20480L + thread * 512L;
                      ByteBuffer data = ByteBuffer.allocate(512);
                      java.util.Arrays.fill(data.array(), (byte) (1 + thread));
                      image.write(data, offset);
                    }
                  } catch (Exception | Error e) {
                    failures.add(e);
                  }
                }));
        for (int k = 0; k < 200; k++) {
          commands.add(
              "write -q -P " + (1 + t) + " " + ((8L << 20) + k * 20480L + t * 512L) + " 512");
        }
      }
      workers.forEach(Thread::start);
      for (Thread w : workers) {
        w.join();
      }
      assertEquals(List.of(), failures);
    }
    assertAsQemuIo(c, ours, theirs, commands);
  }

  /** 30 random writes, zero writes and flushes inside {@code [start, start + bytes)}. */
  private static List<String> runSlice(Qcow2Image image, Random random, long start, long bytes)
      throws IOException {
    List<String> commands = new ArrayList<>();
    for (int op = 0; op < 30; op++) {
      if (random.nextInt(10) == 0) {
        image.flush();
        continue;
      }
      long length = 1 + random.nextInt(random.nextBoolean() ? 4096 : 300_000);
      long offset = start + (long) (random.nextDouble() * (bytes - length));
      if (random.nextInt(8) == 0) {
        image.writeZeroes(offset, length, random.nextBoolean());
        commands.add("write -q -z " + offset + " " + length);
      } else {
        int pattern = 1 + random.nextInt(254);
        ByteBuffer data = ByteBuffer.allocate((int) length);
        java.util.Arrays.fill(data.array(), (byte) pattern);
        image.write(data, offset);
        commands.add("write -q -P " + pattern + " " + offset + " " + length);
      }
    }
    return commands;
  }

  /**
   * Has qemu-io apply {@code commands} to {@code theirs}, then asserts that {@code qemu-img
   * compare} calls it identical to {@code ours} and that {@code qemu-img check} finds nothing in
   * ours.
   */
  private void assertAsQemuIo(Case c, Path ours, Path theirs, List<String> commands)
      throws IOException {
    assertAsQemuIo(c.toString(), ours, theirs, commands);
  }

  /** As {@link #assertAsQemuIo(Case, Path, Path, List)}, the failures naming {@code c}. */
  private void assertAsQemuIo(String c, Path ours, Path theirs, List<String> commands)
      throws IOException {
    Qemu.io(dir, theirs.toString(), commands.toArray(String[]::new));
    Qemu.Check compare = Qemu.compare(ours, theirs);
    assertEquals(
        0, compare.exitStatus(), c + ": qemu-img compare: " + compare + "; ops " + commands);
    Qemu.Check check = Qemu.check(ours);
    assertEquals(0, check.exitStatus(), c + ": qemu-img check: " + check.stderr() + check.json());
  }

  /** Lengths from 512 B to 4 MiB, log-uniform, a third of them not a multiple of 512. */
  static long randomLength(Random r) {
    long length = 512L << r.nextInt(14);
    length += r.nextInt((int) length);
    if (r.nextInt(3) == 0) {
      length += 1 + r.nextInt(511);
    }
    return Math.min(length, 4L << 20);
  }

  static long randomOffset(Random r, long length) {
    long offset = (long) (r.nextDouble() * (SIZE - length));
    return r.nextInt(3) == 0 ? offset : offset & ~511L;
  }

  static Qcow2Image openWritable(Path image) throws IOException {
    return Qcow2Image.open(
        image, new Qcow2Options(-1, null, null, HostFileOptions.DEFAULT.withWritable(true)));
  }

  /** The image below the top one, as a chain would give it (null when there is none). */
  static Image openBacking(Path dir, Case c) throws IOException {
    return switch (c) {
      case BACKING_QCOW2, V2_BACKING -> Qcow2Image.open(dir.resolve("base.qcow2"));
      case BACKING_RAW_SHORTER -> RawImage.open(dir.resolve("base.raw"));
      case CHAIN_3 ->
          new TwoLayers(
              Qcow2Image.open(dir.resolve("mid.qcow2")), RawImage.open(dir.resolve("base.raw")));
      default -> null;
    };
  }

  /** A qcow2 layer over a raw one, linked, read as one image. */
  private record TwoLayers(Qcow2Image top, Image below) implements Image {
    TwoLayers {
      top.setBacking(below);
    }

    @Override
    public long size() {
      return top.size();
    }

    @Override
    public org.jqcowfs.storage.Location location() {
      return top.location();
    }

    @Override
    public long hostBytes() throws IOException {
      return top.hostBytes() + below.hostBytes();
    }

    @Override
    public void read(ByteBuffer dst, long guestOffset) throws IOException {
      top.read(dst, guestOffset);
    }

    /** The status of what it reads: the top layer's, else the lower one's (zeros past its end). */
    @Override
    public org.jqcowfs.image.Extent blockStatus(long guestOffset, long maxLength)
        throws IOException {
      org.jqcowfs.image.Extent e = top.blockStatus(guestOffset, maxLength);
      if (e.allocated()) {
        return e;
      }
      if (guestOffset >= below.size()) {
        return new org.jqcowfs.image.Extent(
            guestOffset, e.length(), false, false, true, false, -1, null);
      }
      return below.blockStatus(guestOffset, Math.min(e.length(), below.size() - guestOffset));
    }

    @Override
    public void close() throws IOException {
      try (below) {
        top.close();
      }
    }
  }

  /** Makes the image {@code c} writes into, with its backing files, in {@code dir}. */
  static Path prepare(Path dir, Case c) throws IOException {
    String top = "top.qcow2";
    switch (c) {
      case BACKING_QCOW2, V2_BACKING -> {
        Qemu.img(
            dir, "create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", "base.qcow2", "48M");
        Qemu.io(dir, "base.qcow2", "write -q -P 0xb1 0 20M", "write -q -c -P 0xb2 24M 1M");
        Qemu.overlay(dir, top, "base.qcow2", "qcow2", c.options, "48M");
      }
      case BACKING_RAW_SHORTER -> {
        Qemu.img(dir, "create", "-q", "-f", "raw", "base.raw", "20000000");
        Qemu.run(dir, "qemu-io", "-f", "raw", "-c", "write -q -P 0xb3 0 20000000", "base.raw");
        Qemu.overlay(dir, top, "base.raw", "raw", c.options, "48M");
      }
      case CHAIN_3 -> {
        Qemu.img(dir, "create", "-q", "-f", "raw", "base.raw", "48M");
        Qemu.run(dir, "qemu-io", "-f", "raw", "-c", "write -q -P 0xb4 0 48M", "base.raw");
        Qemu.overlay(dir, "mid.qcow2", "base.raw", "raw", null, "48M");
        Qemu.io(dir, "mid.qcow2", "write -q -c -P 0xb5 8M 4M", "write -q -P 0xb6 30M 5M");
        Qemu.overlay(dir, top, "mid.qcow2", "qcow2", c.options, "48M");
      }
      default -> Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", c.options, top, "48M");
    }
    List<String> first =
        new ArrayList<>(List.of("write -q -P 0xa1 1M 3M", "write -q -P 0xa2 40M 64k"));
    switch (c) {
      case COMPRESSED, CHAIN_3 -> {
        first.add("write -q -c -P 0xa3 8M 2M");
        first.add("write -q -c -P 0xa4 20M 64k");
      }
      case ZERO_CLUSTERS -> {
        first.add("write -q -z 0 2M");
        first.add("write -q -z -u 12M 4M");
      }
      default -> {}
    }
    Qemu.io(dir, top, first.toArray(String[]::new));
    if (c == Case.SNAPSHOTS) {
      Qemu.img(dir, "snapshot", "-c", "one", top);
      Qemu.io(dir, top, "write -q -P 0xa5 2M 6M");
      Qemu.img(dir, "snapshot", "-c", "two", top);
    }
    return dir.resolve(top);
  }

  private List<String> snapshotHashes(Path image) throws IOException {
    List<String> out = new ArrayList<>();
    for (String name : List.of("one", "two")) {
      if (Qemu.img(dir, "snapshot", "-l", image.toString()).contains(" " + name + " ")) {
        Path raw = dir.resolve("snap-" + name + ".raw");
        Files.deleteIfExists(raw);
        out.add(name + " " + Qemu.sha256(Qemu.convertRaw(image, raw, name)));
        Files.delete(raw);
      }
    }
    return out;
  }
}
