package org.jqcowfs.chain;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Names stored in images (backing files, external data files) reach only files inside the allowed
 * directories: by default the top image's directory and below. Each escape is refused with a
 * message naming the image, the name, where it resolved and the two ways out; {@code --allow-dir},
 * {@code --unsafe-backing} and {@code --probe-backing-format} each open the case they exist for.
 * The images are made by qemu-img; the "host file" is a file outside the image's tree holding a
 * marker that no output may contain.
 */
class ConfinementTest {
  static final byte[] SECRET =
      "host secret: this must never reach a flat file\n"
          .repeat(100)
          .getBytes(StandardCharsets.UTF_8);

  @TempDir Path root;

  /** Where the user's images live (the allowed tree). */
  Path images;

  /** A directory outside it, holding {@code secret.raw}. */
  Path outside;

  Path secret;

  @BeforeEach
  void layout() throws IOException {
    images = Files.createDirectories(root.resolve("images"));
    outside = Files.createDirectories(root.resolve("host"));
    secret = Files.write(outside.resolve("secret.raw"), SECRET);
  }

  /** {@code top.qcow2} in {@code dir} backed by {@code name} (format {@code fmt}, or none). */
  static Path overlay(Path dir, String file, String name, String fmt) throws IOException {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", file, "1M");
    Path f = dir.resolve(file);
    HostileImageTest.backedBy(dir, name, f, fmt);
    return f;
  }

  static void assertRefusal(IOException e, Path image, String name, Path resolved) {
    String m = e.getMessage();
    assertTrue(e instanceof ImageFormatException, m);
    assertTrue(m.contains(image.toString()), "names the image: " + m);
    assertTrue(m.contains("'" + name + "'"), "names the name: " + m);
    assertTrue(m.contains("resolves to " + resolved), "says where it resolved: " + m);
    assertTrue(m.contains("--allow-dir") && m.contains("--unsafe-backing"), "the ways out: " + m);
  }

  static byte[] readAll(BackingChain chain) throws IOException {
    ByteBuffer b = ByteBuffer.allocate((int) chain.size());
    chain.read(b, 0);
    return b.array();
  }

  static boolean holdsSecret(byte[] data) {
    String s = new String(data, StandardCharsets.ISO_8859_1);
    return s.contains("host secret");
  }

  @Test
  void absoluteNameOutsideIsRefusedAndOpensOnlyWithUnsafeBackingOrAllowDir() throws Exception {
    Path top = overlay(images, "top.qcow2", secret.toString(), "raw");
    IOException e = assertThrows(IOException.class, () -> ChainOpener.open(top).close());
    assertRefusal(e, top, secret.toString(), secret.toRealPath());

    ChainOptions unsafe = ChainOptions.DEFAULT.withNames(List.of(), true, false);
    try (BackingChain chain = ChainOpener.open(top, unsafe)) {
      assertTrue(holdsSecret(readAll(chain)), "--unsafe-backing follows it, as QEMU does");
    }
    ChainOptions allowed = ChainOptions.DEFAULT.withNames(List.of(outside), false, false);
    try (BackingChain chain = ChainOpener.open(top, allowed)) {
      assertEquals(2, chain.layers().size());
    }
  }

  @Test
  void etcPasswdAsARawBackingFileIsRefused() throws Exception {
    Path top = overlay(images, "top.qcow2", "/etc/passwd", "raw");
    IOException e = assertThrows(IOException.class, () -> ChainOpener.open(top).close());
    assertRefusal(e, top, "/etc/passwd", Path.of("/etc/passwd").toRealPath());
  }

  @Test
  void dotDotOutOfTheTreeIsRefusedAndInsideIsFine() throws Exception {
    Path sub = Files.createDirectories(images.resolve("sub"));
    Path up = overlay(sub, "up.qcow2", "../../host/secret.raw", "raw");
    IOException e = assertThrows(IOException.class, () -> ChainOpener.open(up).close());
    assertRefusal(e, up, "../../host/secret.raw", secret.toRealPath());

    Files.write(images.resolve("base.raw"), new byte[1 << 20]);
    Path inside = overlay(images, "in.qcow2", "sub/../base.raw", "raw");
    try (BackingChain chain = ChainOpener.open(inside)) {
      assertEquals(2, chain.layers().size(), "'..' that lands inside is followed");
    }
    Path absoluteInside =
        overlay(images, "abs.qcow2", images.resolve("base.raw").toString(), "raw");
    try (BackingChain chain = ChainOpener.open(absoluteInside)) {
      assertEquals(2, chain.layers().size(), "an absolute name inside is followed");
    }
  }

  @Test
  void symlinkOutOfTheTreeIsRefused() throws Exception {
    Files.createSymbolicLink(images.resolve("link.raw"), secret);
    Path top = overlay(images, "top.qcow2", "link.raw", "raw");
    IOException e = assertThrows(IOException.class, () -> ChainOpener.open(top).close());
    assertRefusal(e, top, "link.raw", secret.toRealPath());

    Path linkedDir = Files.createSymbolicLink(images.resolve("hostdir"), outside);
    Path viaDir = overlay(images, "dir.qcow2", "hostdir/secret.raw", "raw");
    e = assertThrows(IOException.class, () -> ChainOpener.open(viaDir).close());
    assertRefusal(e, viaDir, "hostdir/secret.raw", secret.toRealPath());
    assertTrue(Files.isSymbolicLink(linkedDir));
  }

  @Test
  void externalDataFileOutOfTheTreeIsRefused() throws Exception {
    Qemu.img(images, "create", "-q", "-f", "qcow2", "-o", "data_file=../host/dat", "x.qcow2", "1M");
    Path x = images.resolve("x.qcow2");
    IOException e = assertThrows(IOException.class, () -> ChainOpener.open(x).close());
    assertTrue(e.getMessage().contains("external data file '../host/dat'"), e.getMessage());
    assertRefusal(e, x, "../host/dat", outside.resolve("dat").toRealPath());
    try (BackingChain chain =
        ChainOpener.open(x, ChainOptions.DEFAULT.withNames(List.of(outside), false, false))) {
      assertEquals(1 << 20, chain.size());
    }
  }

  @Test
  void aLowerLayerPointingOutIsRefusedNamingThatLayer() throws Exception {
    Path mid = overlay(images, "mid.qcow2", secret.toString(), "raw");
    Path top = overlay(images, "top.qcow2", "mid.qcow2", "qcow2");
    IOException e = assertThrows(IOException.class, () -> ChainOpener.open(top).close());
    assertRefusal(e, mid, secret.toString(), secret.toRealPath());
  }

  /**
   * A raw disk whose guest wrote a qcow2 header (here: a qcow2 image naming the host file), used as
   * a backing file with no stored format. Probing it into qcow2 would follow the header's name.
   */
  @Test
  void aRawBackingFileWithAQcow2HeaderIsNotProbed() throws Exception {
    Path guestWritten = overlay(images, "disk.img", secret.toString(), "raw");
    Path top = overlay(images, "top.qcow2", "disk.img", null);
    IOException e = assertThrows(IOException.class, () -> ChainOpener.open(top).close());
    String m = e.getMessage();
    assertTrue(m.contains(top.toString()) && m.contains("'disk.img'"), m);
    assertTrue(m.contains("qcow2 magic"), m);
    assertTrue(m.contains("qemu-img rebase -u -F qcow2 -b disk.img " + top), m);
    assertTrue(m.contains("--probe-backing-format"), m);

    // Probed (the user trusts it), its own backing name is still confined.
    ChainOptions probe = ChainOptions.DEFAULT.withNames(List.of(), false, true);
    e = assertThrows(IOException.class, () -> ChainOpener.open(top, probe).close());
    assertRefusal(e, guestWritten, secret.toString(), secret.toRealPath());

    // A format-less backing file without the magic is still read as raw.
    Files.write(images.resolve("plain.img"), new byte[1 << 20]);
    Path plain = overlay(images, "plain.qcow2", "plain.img", null);
    try (BackingChain chain = ChainOpener.open(plain)) {
      assertEquals(2, chain.layers().size());
      assertArrayEquals(new byte[1 << 20], readAll(chain));
    }
  }

  @Test
  void theTopImageIsQcow2UnlessTheUserSaysRaw() throws Exception {
    byte[] disk = Arrays.copyOf("a raw disk".getBytes(StandardCharsets.US_ASCII), 1 << 16);
    Path raw = Files.write(images.resolve("disk.raw"), disk);
    IOException e = assertThrows(IOException.class, () -> ChainOpener.open(raw).close());
    assertTrue(
        e.getMessage().contains(raw + ": not a qcow2 image (magic 0x61207261"), e.getMessage());
    assertTrue(e.getMessage().contains("-f raw"), e.getMessage());
    try (BackingChain chain =
        ChainOpener.open(raw, ChainOptions.DEFAULT.withTopFormat(ChainOpener.Format.RAW))) {
      assertArrayEquals(disk, readAll(chain));
    }
  }
}
