package org.jqcowfs.remote;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Duration;
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
 * A server that fails, through {@link FaultProxy} in front of a real nginx: 503s, cut bodies and
 * dropped connections are retried and the bytes are exact; a server that keeps failing, stays
 * silent, ignores Range or is gone gives an error for the read within the retry budget, never a
 * hang.
 */
class HttpFaultTest {
  @TempDir static Path dir;
  static Nginx nginx;
  static Path image;
  static Path reference;

  static final RemoteOptions FAST =
      RemoteOptions.DEFAULT.withRetries(Duration.ofSeconds(2), 4, Duration.ofSeconds(20));

  @BeforeAll
  static void start() throws Exception {
    nginx = Nginx.start(dir.resolve("nginx"), "");
    image = nginx.root.resolve("a.qcow2");
    Qemu.img(nginx.root, "create", "-q", "-f", "qcow2", image.toString(), "8M");
    Qemu.io(nginx.root, image.toString(), "write -P 0x61 0 3M", "write -c -P 0x62 4M 2M");
    reference = Qemu.convertRaw(image, dir.resolve("a.raw"), null);
  }

  @AfterAll
  static void stop() throws Exception {
    nginx.close();
  }

  static BackingChain open(FaultProxy proxy, RemoteOpener opener) throws IOException {
    return ChainOpener.open(
        RemoteOpener.parse(proxy.url("a.qcow2")), ChainOptions.DEFAULT.withStorage(opener));
  }

  @Test
  void unavailableCutAndDroppedAnswersAreRetriedAndReadExactly() throws Exception {
    try (FaultProxy proxy = new FaultProxy(nginx.port)) {
      RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, FAST);
      proxy.faults.addAll(
          List.of(FaultProxy.Fault.UNAVAILABLE, FaultProxy.Fault.CUT_BODY, FaultProxy.Fault.CLOSE));
      try (BackingChain chain = open(proxy, opener)) {
        proxy.faults.addAll(List.of(FaultProxy.Fault.CUT_BODY, FaultProxy.Fault.UNAVAILABLE));
        assertEquals(Qemu.sha256(reference), HttpImageTest.sha256(chain));
      }
      // a connection closed before any answer is sent again by the JDK's client itself (an
      // idempotent GET), so four of the five faults are ours to retry
      assertTrue(opener.stats().retries() >= 4, opener.stats().toString());
      assertTrue(proxy.requests.get() > opener.stats().requests(), "the JDK's own retry");
    }
  }

  /** A read after open that finds the fault. */
  static void assertReadFails(FaultProxy.Fault fault, String expected) throws Exception {
    try (FaultProxy proxy = new FaultProxy(nginx.port)) {
      RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, FAST);
      try (BackingChain chain = open(proxy, opener)) {
        for (int i = 0; i < 8; i++) {
          proxy.faults.add(fault);
        }
        long start = System.nanoTime();
        IOException e =
            assertTimeoutPreemptively(
                Duration.ofSeconds(30),
                () ->
                    assertThrows(
                        IOException.class,
                        () -> chain.read(ByteBuffer.allocate(1 << 20), 1 << 20)));
        assertTrue(e.getMessage().contains(expected), e.getMessage());
        assertTrue(e.getMessage().contains(proxy.url("a.qcow2")), e.getMessage());
        assertTrue(System.nanoTime() - start < 25_000_000_000L, "within the retry budget");
      }
    }
  }

  @Test
  void aServerThatKeepsFailingGivesAnErrorWithinTheBudget() throws Exception {
    assertReadFails(FaultProxy.Fault.UNAVAILABLE, "failed after 4 attempts: HTTP 503");
  }

  @Test
  void aSilentServerTimesOut() throws Exception {
    assertReadFails(FaultProxy.Fault.SILENCE, "no answer within 2000 ms");
  }

  @Test
  void aServerThatStartsIgnoringRangeIsAnError() throws Exception {
    assertReadFails(FaultProxy.Fault.IGNORE_RANGE, "ignored the Range header");
  }

  @Test
  void aBodyLongerThanTheRangeIsAnError() throws Exception {
    assertReadFails(FaultProxy.Fault.TOO_LONG, "sent more than the");
  }

  @Test
  void aServerGoneUnderAnOpenImageIsAnError() throws Exception {
    FaultProxy proxy = new FaultProxy(nginx.port);
    RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, FAST);
    try (BackingChain chain = open(proxy, opener)) {
      proxy.close();
      IOException e =
          assertTimeoutPreemptively(
              Duration.ofSeconds(30),
              () ->
                  assertThrows(
                      IOException.class, () -> chain.read(ByteBuffer.allocate(1 << 20), 1 << 20)));
      assertTrue(e.getMessage().contains("failed after"), e.getMessage());
    }
  }
}
