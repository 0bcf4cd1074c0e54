package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.qcow2.testing.ImageMatrix;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import picocli.CommandLine;

/**
 * Every image of the matrix, compared with QEMU's answers: {@code jqcowfs convert} against {@code
 * qemu-img convert -O raw} (whole-file hash), 200 random reads through the {@code Image} API
 * against the raw reference, {@code jqcowfs map --output=json} against {@code qemu-img map
 * --output=json} object for object, SEEK_DATA/SEEK_HOLE walks against the data runs of QEMU's map,
 * and each snapshot view against {@code qemu-img convert -l snapshot.name=}.
 */
class DifferentialTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  static List<ImageMatrix.Named> matrix() {
    return ImageMatrix.all();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("matrix")
  void matchesQemu(ImageMatrix.Named named, @TempDir Path dir) throws Exception {
    ImageMatrix.Case c = named.recipe().build(dir);
    Path reference = Qemu.convertRaw(c.image(), dir.resolve("qemu.raw"), null);

    Path ours = dir.resolve("jqcowfs.raw");
    // the matrix holds a chain whose base lies in a sibling directory ("chain-other-dir")
    String allow = dir.toString();
    ChainOptions options = ChainOptions.DEFAULT.withNames(List.of(dir), false, false);
    Run convert =
        cli("convert", "--allow-dir", allow, "-m", "4", c.image().toString(), ours.toString());
    assertEquals(0, convert.code, convert.err);
    assertEquals(Qemu.sha256(reference), Qemu.sha256(ours), "convert output differs from qemu-img");

    try (BackingChain chain = ChainOpener.open(c.image(), options)) {
      assertEquals(Files.size(reference), chain.size(), "virtual size");
      randomReads(chain, reference, c.name().hashCode());

      JsonNode qemuMap = JSON.readTree(Qemu.mapJson(c.image()));
      Run map = cli("map", "--allow-dir", allow, "--output=json", c.image().toString());
      assertEquals(0, map.code, map.err);
      assertMapsEqual(qemuMap, JSON.readTree(map.out));
      assertSeekWalk(chain, qemuMap);
    }

    assertInfoEqual(c.image(), allow);
    assertCheckEqual(c.image(), allow);

    for (String snapshot : c.snapshots()) {
      Path snapRef = Qemu.convertRaw(c.image(), dir.resolve("qemu-" + snapshot + ".raw"), snapshot);
      Path snapOurs = dir.resolve("jqcowfs-" + snapshot + ".raw");
      Run r =
          cli(
              "convert",
              "--allow-dir",
              allow,
              "--snapshot",
              snapshot,
              c.image().toString(),
              snapOurs.toString());
      assertEquals(0, r.code, r.err);
      assertEquals(Qemu.sha256(snapRef), Qemu.sha256(snapOurs), "snapshot " + snapshot);
      try (BackingChain view = ChainOpener.open(c.image(), options.withSnapshot(snapshot))) {
        randomReads(view, snapRef, snapshot.hashCode());
      }
    }
  }

  /**
   * {@code jqcowfs check} against {@code qemu-img check} of the top image: the same report and exit
   * status (raw images, which qemu-img cannot check, and images with persistent bitmaps, which
   * jqcowfs does not check yet, are left out).
   */
  static void assertCheckEqual(Path image, String allowDir) throws Exception {
    assertCheckEqual(image, image.toString(), allowDir);
  }

  /** As {@link #assertCheckEqual(Path, String)}, jqcowfs given {@code target} (a URL of it). */
  static void assertCheckEqual(Path image, String target, String allowDir) throws Exception {
    Process p =
        new ProcessBuilder("qemu-img", "check", image.toString())
            .directory(image.getParent().toFile()) // qemu-img opens a data file from its cwd
            .redirectError(ProcessBuilder.Redirect.DISCARD)
            .start();
    String qemuOut = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    int qemuCode = p.waitFor();
    Run ours = cli("check", "--allow-dir", allowDir, target);
    if (qemuCode == 63) {
      return;
    }
    assertEquals(qemuCode, ours.code, "check exit status: " + ours.err);
    assertEquals(qemuOut, ours.out, "check report");
  }

  /**
   * {@code jqcowfs info --output=json --backing-chain} against {@code qemu-img info}: every key
   * both know, for each layer (actual-size and filename are left out: QEMU's filename is the name
   * as given, and both read actual-size from st_blocks at their own moment).
   */
  static void assertInfoEqual(Path image, String allowDir) throws IOException {
    assertInfoEqual(image, image.toString(), allowDir);
  }

  /** As {@link #assertInfoEqual(Path, String)}, jqcowfs given {@code target} (a URL of it). */
  static void assertInfoEqual(Path image, String target, String allowDir) throws IOException {
    JsonNode qemu =
        JSON.readTree(
            Qemu.img(
                image.getParent(), "info", "--output=json", "--backing-chain", image.toString()));
    Run r = cli("info", "--allow-dir", allowDir, "--output=json", "--backing-chain", target);
    assertEquals(0, r.code, r.err);
    JsonNode ours = JSON.readTree(r.out);
    assertEquals(qemu.size(), ours.size(), "layers");
    for (int i = 0; i < qemu.size(); i++) {
      JsonNode q = qemu.get(i);
      JsonNode o = ours.get(i);
      for (String key :
          List.of(
              "virtual-size",
              "format",
              "cluster-size",
              "backing-filename",
              "backing-filename-format",
              "dirty-flag")) {
        assertEquals(q.get(key), o.get(key), "layer " + i + " key " + key);
      }
      JsonNode qd = q.path("format-specific").path("data");
      JsonNode od = o.path("format-specific").path("data");
      for (String key :
          List.of(
              "compat",
              "compression-type",
              "lazy-refcounts",
              "refcount-bits",
              "corrupt",
              "extended-l2",
              "data-file",
              "data-file-raw",
              "bitmaps")) {
        assertEquals(qd.get(key), od.get(key), "layer " + i + " format-specific " + key);
      }
      JsonNode qs = q.path("snapshots");
      JsonNode os = o.path("snapshots");
      assertEquals(qs.size(), os.size(), "snapshots");
      for (int k = 0; k < qs.size(); k++) {
        for (String key : List.of("id", "name", "vm-state-size", "date-sec", "vm-clock-nsec")) {
          assertEquals(qs.get(k).get(key), os.get(k).get(key), "snapshot " + k + " " + key);
        }
      }
    }
  }

  /** 200 random (offset, length) reads compared with the reference raw file. */
  static void randomReads(BackingChain chain, Path reference, long seed) throws IOException {
    Random r = new Random(seed);
    long size = chain.size();
    try (FileChannel ref = FileChannel.open(reference)) {
      for (int i = 0; i < 200; i++) {
        long off = (r.nextLong() & Long.MAX_VALUE) % size;
        if (r.nextBoolean()) {
          off &= ~511L;
        }
        int len =
            (int)
                Math.min(
                    size - off, r.nextInt(4) == 0 ? r.nextInt(3 << 20) + 1 : r.nextInt(70000) + 1);
        ByteBuffer ours = ByteBuffer.allocate(len);
        chain.read(ours, off);
        assertEquals(len, ours.position());
        ByteBuffer want = ByteBuffer.allocate(len);
        while (want.hasRemaining()) {
          ref.read(want, off + want.position());
        }
        assertEquals(want.flip(), ours.flip(), "read of " + len + " bytes at " + off);
      }
    }
  }

  /** Same objects in the same order; ours may add only "compressed" (QEMU >= 8.2 key). */
  static void assertMapsEqual(JsonNode qemu, JsonNode ours) {
    assertEquals(
        qemu.size(), ours.size(), () -> "map object count\nqemu: " + qemu + "\nours: " + ours);
    for (int i = 0; i < qemu.size(); i++) {
      JsonNode q = qemu.get(i);
      JsonNode o = ours.get(i);
      Iterator<Map.Entry<String, JsonNode>> fields = q.fields();
      while (fields.hasNext()) {
        Map.Entry<String, JsonNode> f = fields.next();
        assertEquals(
            f.getValue(),
            o.get(f.getKey()),
            "object " + i + " key " + f.getKey() + "\nqemu: " + q + "\nours: " + o);
      }
      Iterator<String> names = o.fieldNames();
      while (names.hasNext()) {
        String n = names.next();
        assertTrue(q.has(n) || Set.of("compressed").contains(n), "extra key " + n + " in " + o);
      }
      if (o.path("compressed").asBoolean()) {
        assertTrue(
            q.get("data").asBoolean() && !q.has("offset"),
            "compressed run must be data without offset: " + q);
      }
    }
  }

  /**
   * Walks SEEK_DATA/SEEK_HOLE over the whole disk and compares the data segments with the runs
   * QEMU's map marks as data that does not read as zero ("data": true, "zero": false; QEMU's FUSE
   * export also takes "zero": true data, such as a raw layer's holes, for data), and checks that
   * holes exist where QEMU has them.
   */
  static void assertSeekWalk(BackingChain chain, JsonNode qemuMap) throws IOException {
    List<long[]> want = new ArrayList<>();
    for (JsonNode e : qemuMap) {
      long s = e.get("start").asLong();
      long l = e.get("length").asLong();
      if (e.get("data").asBoolean() && !e.get("zero").asBoolean()) {
        if (!want.isEmpty() && want.get(want.size() - 1)[1] == s) {
          want.get(want.size() - 1)[1] = s + l;
        } else {
          want.add(new long[] {s, s + l});
        }
      }
    }
    List<long[]> got = new ArrayList<>();
    long pos = 0;
    while (true) {
      long data = chain.seekData(pos);
      if (data < 0) {
        break;
      }
      long hole = chain.seekHole(data);
      assertTrue(hole > data, "SEEK_HOLE(" + data + ") = " + hole);
      got.add(new long[] {data, hole});
      pos = hole;
      if (pos >= chain.size()) {
        break;
      }
    }
    assertEquals(toString(want), toString(got), "SEEK_DATA/SEEK_HOLE segments");
    assertEquals(-1, chain.seekData(chain.size()), "SEEK_DATA at EOF must be ENXIO");
    assertEquals(chain.size(), chain.seekHole(chain.size()));
  }

  private static String toString(List<long[]> segments) {
    StringBuilder b = new StringBuilder();
    for (long[] s : segments) {
      b.append('[').append(s[0]).append(',').append(s[1]).append(")\n");
    }
    return b.toString();
  }

  record Run(int code, String out, String err) {}

  static Run cli(String... args) {
    CommandLine cl = Main.commandLine();
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    cl.setOut(new PrintWriter(out));
    cl.setErr(new PrintWriter(err));
    int code = cl.execute(args);
    return new Run(code, out.toString(), err.toString());
  }
}
