package org.jqcowfs.remote;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * HTTPS from a real nginx with a certificate of a CA made for the test: refused against the
 * system's trust store alone (one error naming the URL and {@code --ca-file}, no retries), read
 * exactly over HTTP/2 once the CA file is given.
 */
class HttpsTest {
  @TempDir static Path dir;
  static Nginx nginx;
  static Path image;

  @BeforeAll
  static void start() throws Exception {
    nginx = Nginx.start(dir.resolve("nginx"), "", true);
    image = nginx.root.resolve("t.qcow2");
    Qemu.img(
        nginx.root,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "compression_type=zstd",
        image.toString(),
        "16M");
    Qemu.io(nginx.root, image.toString(), "write -P 0x71 1M 3M", "write -c -P 0x72 8M 2M");
  }

  @AfterAll
  static void stop() throws Exception {
    nginx.close();
  }

  @Test
  void anUntrustedCertificateIsOneErrorNamingTheOption() {
    RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, RemoteOptions.DEFAULT);
    IOException e =
        assertThrows(
            IOException.class,
            () ->
                ChainOpener.open(
                    RemoteOpener.parse(nginx.tlsUrl("t.qcow2")),
                    ChainOptions.DEFAULT.withStorage(opener)));
    assertTrue(e.getMessage().contains(nginx.tlsUrl("t.qcow2")), e.getMessage());
    assertTrue(e.getMessage().contains("--ca-file"), e.getMessage());
    assertEquals(0, opener.stats().retries(), "a certificate is not retried");
  }

  @Test
  void theCaFileIsTrustedAndHttp2IsUsed() throws Exception {
    RemoteOpener opener =
        new RemoteOpener(PosixOpener.DEFAULT, RemoteOptions.DEFAULT.withCaFile(nginx.caFile));
    Path reference = Qemu.convertRaw(image, dir.resolve("t.raw"), null);
    try (BackingChain chain =
        ChainOpener.open(
            RemoteOpener.parse(nginx.tlsUrl("t.qcow2")),
            ChainOptions.DEFAULT.withStorage(opener))) {
      assertEquals(Qemu.sha256(reference), HttpImageTest.sha256(chain));
    }
    List<String> log = nginx.settledAccessLog();
    assertTrue(
        log.stream().anyMatch(l -> l.contains("/t.qcow2 HTTP/2.0 206")), String.join("\n", log));
  }
}
