package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.jqcowfs.qcow2.testing.ImageMatrix;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.remote.Nginx;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The read commands given URLs of a real nginx (127.0.0.1), for every image of the matrix: {@code
 * info}, {@code map}, {@code check} and {@code convert} answer as {@code qemu-img} answers for the
 * local file, {@code snapshot -l} lists what {@code qemu-img snapshot -l} lists, and {@code check
 * -r} of a URL is refused.
 */
class RemoteCommandsTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  @TempDir static Path dir;
  static Nginx nginx;

  @BeforeAll
  static void start() throws Exception {
    nginx = Nginx.start(dir.resolve("nginx"), "");
  }

  @AfterAll
  static void stop() throws Exception {
    nginx.close();
  }

  static List<ImageMatrix.Named> matrix() {
    return ImageMatrix.all();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("matrix")
  void answersAsQemuImgForTheLocalFile(ImageMatrix.Named named, @TempDir Path work)
      throws Exception {
    Path caseDir = Files.createDirectories(nginx.root.resolve(named.name()));
    ImageMatrix.Case c = named.recipe().build(caseDir);
    String url = nginx.url(nginx.root.relativize(c.image()).toString());
    String allow = nginx.url(named.name() + "/");

    DifferentialTest.assertInfoEqual(c.image(), url, allow);
    DifferentialTest.assertCheckEqual(c.image(), url, allow);
    DifferentialTest.Run map =
        DifferentialTest.cli("map", "--allow-dir", allow, "--output=json", url);
    assertEquals(0, map.code(), map.err());
    // the oracle reads the same URL (QEMU's curl driver): a server tells no holes of its files;
    // QEMU opens an external data file from its working directory, so that is the image's
    String qemuMap = Qemu.img(c.image().getParent(), "map", "-f", "qcow2", "--output=json", url);
    DifferentialTest.assertMapsEqual(JSON.readTree(qemuMap), JSON.readTree(map.out()));

    Path reference = Qemu.convertRaw(c.image(), work.resolve("qemu.raw"), null);
    Path ours = work.resolve("ours.raw");
    DifferentialTest.Run convert =
        DifferentialTest.cli("convert", "--allow-dir", allow, url, ours.toString());
    assertEquals(0, convert.code(), convert.err());
    assertEquals(Qemu.sha256(reference), Qemu.sha256(ours), "convert of the URL");

    if (!c.snapshots().isEmpty()) {
      DifferentialTest.Run list = DifferentialTest.cli("snapshot", "-l", url);
      assertEquals(0, list.code(), list.err());
      assertEquals(
          Qemu.img(c.image().getParent(), "snapshot", "-l", c.image().toString()),
          list.out(),
          "snapshot -l");
    }
  }

  @Test
  void checkRepairOfAUrlIsRefused() throws Exception {
    Path image = nginx.root.resolve("r.qcow2");
    Qemu.img(nginx.root, "create", "-q", "-f", "qcow2", image.toString(), "4M");
    DifferentialTest.Run r = DifferentialTest.cli("check", "-r", "leaks", nginx.url("r.qcow2"));
    assertEquals(1, r.code(), r.out());
    assertTrue(r.err().contains("a remote image is never written"), r.err());
  }
}
