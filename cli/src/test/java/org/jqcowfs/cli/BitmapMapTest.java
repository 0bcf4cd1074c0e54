package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code map --bitmap NAME} against QEMU: the image served by {@code qemu-nbd -B NAME} on a Unix
 * socket and read with {@code nbdinfo --map=qemu:dirty-bitmap:NAME} (Debian's libnbd-bin); dirty
 * ranges from unaligned qemu-io writes, zero writes and discards, at granularities from 512 B to 16
 * MiB, a disabled bitmap, and a disk whose size is not a multiple of the granularity.
 */
class BitmapMapTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** {start, length, dirty} runs, neighbours of one kind merged. */
  static List<List<Object>> merged(List<List<Object>> runs) {
    List<List<Object>> out = new ArrayList<>();
    for (List<Object> r : runs) {
      if (!out.isEmpty() && out.get(out.size() - 1).get(2).equals(r.get(2))) {
        List<Object> last = out.get(out.size() - 1);
        out.set(
            out.size() - 1, List.of(last.get(0), (long) last.get(1) + (long) r.get(1), r.get(2)));
      } else {
        out.add(r);
      }
    }
    return out;
  }

  /** What QEMU exports for {@code name} ({@link Qemu#dirtyBitmap}). */
  static List<List<Object>> qemu(Path image, String name) throws Exception {
    List<List<Object>> runs = new ArrayList<>();
    for (long[] r : Qemu.dirtyBitmap(image, name)) {
      runs.add(List.of(r[0], r[1], r[2] == 1));
    }
    return merged(runs);
  }

  static List<List<Object>> ours(Path image, String name) throws IOException {
    DifferentialTest.Run r =
        DifferentialTest.cli("map", "--output=json", "--bitmap", name, image.toString());
    assertEquals(0, r.code(), r.err());
    List<List<Object>> runs = new ArrayList<>();
    for (JsonNode e : JSON.readTree(r.out())) {
      runs.add(
          List.of(e.get("start").asLong(), e.get("length").asLong(), e.get("dirty").asBoolean()));
    }
    return runs;
  }

  @Test
  void dirtyRangesAreWhatQemuExports(@TempDir Path dir) throws Exception {
    Path p = dir.resolve("d.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", p.toString(), "100000000"); // not 2^n: 100000256
    String[][] bitmaps = {{"g512", "512"}, {"g64k", "65536"}, {"g16m", "16777216"}};
    for (String[] b : bitmaps) {
      Qemu.img(dir, "bitmap", "--add", "-g", b[1], p.toString(), b[0]);
    }
    Qemu.img(dir, "bitmap", "--add", "--disable", p.toString(), "off");
    Qemu.io(
        dir,
        p.toString(),
        "write -P 1 1000 3000",
        "write -P 2 5M 1M",
        "write -z 20M 64k",
        "discard 40M 2M",
        "write -P 3 99999000 1000");
    long size =
        JSON.readTree(Qemu.img(dir, "info", "--output=json", p.toString()))
            .get("virtual-size")
            .asLong();
    for (String name : List.of("g512", "g64k", "g16m", "off")) {
      List<List<Object>> ours = ours(p, name);
      assertEquals(qemu(p, name), ours, name);
      long sum = ours.stream().mapToLong(r -> (long) r.get(1)).sum();
      assertEquals(size, sum, name + ": the runs tile the disk");
    }
    assertTrue(ours(p, "g512").stream().anyMatch(r -> (boolean) r.get(2)), "some dirty");
  }

  @Test
  void anInUseBitmapIsRefused(@TempDir Path dir) throws Exception {
    Path p = BitmapInfoTest.image(dir);
    BitmapInfoTest.setInUse(p);
    DifferentialTest.Run r = DifferentialTest.cli("map", "--bitmap", "b1", p.toString());
    assertEquals(1, r.code(), r.out());
    assertTrue(r.err().contains("'b1' is in use"), r.err());
  }
}
