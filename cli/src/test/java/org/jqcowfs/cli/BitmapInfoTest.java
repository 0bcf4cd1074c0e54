package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import org.jqcowfs.qcow2.testing.Poke;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Persistent dirty bitmaps as {@code info} and {@code check} see them, against {@code qemu-img}:
 * enabled, disabled and in-use bitmaps of several granularities, with bitmap data clusters that
 * QEMU wrote (a bitmap's clusters counted as references, not leaks).
 */
class BitmapInfoTest {
  private static final ObjectMapper JSON = new ObjectMapper();

  /** 64 MiB, three bitmaps, dirty bits set by qemu-io writes (so data clusters exist). */
  static Path image(Path dir) throws IOException {
    Path p = dir.resolve("bm.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", p.toString(), "64M");
    Qemu.img(dir, "bitmap", "--add", p.toString(), "b1");
    Qemu.img(dir, "bitmap", "--add", "-g", "1M", "--disable", p.toString(), "b2 disabled");
    Qemu.img(dir, "bitmap", "--add", "-g", "512", p.toString(), "b3");
    Qemu.io(dir, p.toString(), "write -P 1 0 4M", "write -P 2 10M 1M", "write -z 20M 2M");
    return p;
  }

  /** The lines from "Format specific information:" on. */
  static String formatSpecific(String info) {
    return info.substring(info.indexOf("Format specific information:"));
  }

  static void assertInfoAndCheckAsQemu(Path p) throws Exception {
    DifferentialTest.Run human = DifferentialTest.cli("info", p.toString());
    assertEquals(0, human.code(), human.err());
    assertEquals(
        formatSpecific(Qemu.img(p.getParent(), "info", p.toString())), formatSpecific(human.out()));
    DifferentialTest.Run json = DifferentialTest.cli("info", "--output=json", p.toString());
    assertEquals(0, json.code(), json.err());
    JsonNode ours = JSON.readTree(json.out()).path("format-specific").path("data");
    JsonNode qemu =
        JSON.readTree(Qemu.img(p.getParent(), "info", "--output=json", p.toString()))
            .path("format-specific")
            .path("data");
    assertTrue(qemu.has("bitmaps"), qemu.toString());
    assertEquals(qemu.get("bitmaps"), ours.get("bitmaps"));
    DifferentialTest.assertCheckEqual(p, p.getParent().toString());
  }

  @Test
  void bitmapsAreListedAndTheirClustersCountedAsQemuDoes(@TempDir Path dir) throws Exception {
    assertInfoAndCheckAsQemu(image(dir));
  }

  @Test
  void anInUseBitmapIsShownSo(@TempDir Path dir) throws Exception {
    Path p = image(dir);
    setInUse(p);
    assertTrue(Qemu.img(dir, "info", p.toString()).contains("in-use"), "QEMU sees it in use");
    assertInfoAndCheckAsQemu(p);
  }

  /** Sets the in-use flag of the first bitmap, found by walking the header extensions. */
  static void setInUse(Path p) throws IOException {
    new Poke(p).orBitmapFlags(0, 1);
  }
}
