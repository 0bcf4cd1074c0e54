package org.jqcowfs.remote;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.qcow2.testing.ImageMatrix;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.storage.Location;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Images read from a real S3 server (S3Proxy on 127.0.0.1, SigV4): every image of the differential
 * matrix, chain and data files resolved within the bucket, equals {@code qemu-img convert} of the
 * local file; an uploaded object (with an ETag) replaced under an open image fails what is not
 * cached; 404, refused signatures and missing credentials are one-line errors naming the URL;
 * faults between client and server are retried by the SDK within the budget, never a hang.
 */
class S3ImageTest {
  @TempDir static Path dir;
  static S3Proxy s3;

  static final String BUCKET = "images";

  @BeforeAll
  static void start() throws Exception {
    s3 = S3Proxy.start(dir.resolve("s3"), BUCKET, "other");
    // the standard credential chain reads these system properties (and no instance metadata)
    System.setProperty("aws.accessKeyId", S3Proxy.ACCESS_KEY);
    System.setProperty("aws.secretAccessKey", S3Proxy.SECRET_KEY);
    System.setProperty("aws.disableEc2Metadata", "true");
  }

  @AfterAll
  static void stop() throws Exception {
    System.clearProperty("aws.accessKeyId");
    System.clearProperty("aws.secretAccessKey");
    s3.close();
  }

  static ChainOptions options(RemoteOpener opener, String allowedPrefix) {
    return ChainOptions.DEFAULT
        .withStorage(opener)
        .withAllowedDirs(List.of(S3Location.of(allowedPrefix)), false, false);
  }

  static List<ImageMatrix.Named> matrix() {
    return ImageMatrix.all();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("matrix")
  void readsAsQemuReadsTheLocalFile(ImageMatrix.Named named, @TempDir Path work) throws Exception {
    Path bucket = s3.root.resolve(BUCKET);
    Path caseDir = Files.createDirectories(bucket.resolve("matrix").resolve(named.name()));
    ImageMatrix.Case c = named.recipe().build(caseDir);
    String url = "s3://" + BUCKET + "/" + bucket.relativize(c.image());
    Path reference = Qemu.convertRaw(c.image(), work.resolve("qemu.raw"), null);
    try (RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, s3.options())) {
      ChainOptions options = options(opener, "s3://" + BUCKET + "/matrix/" + named.name() + "/");
      try (BackingChain chain = ChainOpener.open(RemoteOpener.parse(url), options)) {
        assertEquals(Files.size(reference), chain.size(), "virtual size");
        assertEquals(Qemu.sha256(reference), HttpImageTest.sha256(chain), "bytes read over S3");
      }
      for (String snapshot : c.snapshots()) {
        Path snapRef =
            Qemu.convertRaw(c.image(), work.resolve("qemu-" + snapshot + ".raw"), snapshot);
        try (BackingChain view =
            ChainOpener.open(RemoteOpener.parse(url), options.withSnapshot(snapshot))) {
          assertEquals(Qemu.sha256(snapRef), HttpImageTest.sha256(view), "snapshot " + snapshot);
        }
      }
      assertTrue(opener.stats().requests() > 0, "requests were counted");
    }
  }

  /** A 4 MiB qcow2 image in {@code work} holding 1 MiB of 0x5a, then {@code more} qemu-io. */
  static Path image(Path work, String name, String... more) throws Exception {
    Path p = work.resolve(name);
    Qemu.img(work, "create", "-q", "-f", "qcow2", p.toString(), "4M");
    Qemu.io(work, p.toString(), "write -P 0x5a 0 1M");
    for (String cmd : more) {
      Qemu.io(work, p.toString(), cmd);
    }
    return p;
  }

  @Test
  void anUploadedObjectReplacedUnderAnOpenImageFailsWhatIsNotCached(@TempDir Path work)
      throws Exception {
    Path p = image(work, "a.qcow2", "write -P 0x11 2M 1M");
    s3.put(BUCKET, "replaced/a.qcow2", p);
    try (RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, s3.options());
        BackingChain chain =
            ChainOpener.open(
                RemoteOpener.parse("s3://" + BUCKET + "/replaced/a.qcow2"),
                options(opener, "s3://" + BUCKET + "/"))) {
      ByteBuffer first = ByteBuffer.allocate(64 << 10);
      chain.read(first, 0);
      Path fresh = work.resolve("fresh.qcow2");
      Qemu.img(work, "create", "-q", "-f", "qcow2", fresh.toString(), "4M");
      Qemu.io(work, fresh.toString(), "write -P 0x22 0 4M");
      s3.put(BUCKET, "replaced/a.qcow2", fresh);
      ByteBuffer again = ByteBuffer.allocate(64 << 10);
      chain.read(again, 0);
      assertEquals(first.flip(), again.flip(), "cached bytes still read");
      IOException e =
          assertThrows(IOException.class, () -> chain.read(ByteBuffer.allocate(1 << 20), 2 << 20));
      assertTrue(e.getMessage().contains("changed since it was opened"), e.getMessage());
      assertTrue(e.getMessage().contains("s3://" + BUCKET + "/replaced/a.qcow2"), e.getMessage());
    }
  }

  @Test
  void aMissingObjectNamesItsUrlAndStatus() throws Exception {
    try (RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, s3.options())) {
      NoSuchFileException e =
          assertThrows(
              NoSuchFileException.class,
              () ->
                  ChainOpener.open(
                      RemoteOpener.parse("s3://" + BUCKET + "/none.qcow2"),
                      options(opener, "s3://" + BUCKET + "/")));
      assertTrue(e.getMessage().contains("s3://" + BUCKET + "/none.qcow2"), e.getMessage());
      assertTrue(e.getMessage().contains("404"), e.getMessage());
    }
  }

  @Test
  void wrongCredentialsAreRefusedInOneLine(@TempDir Path work) throws Exception {
    s3.put(BUCKET, "signed/a.qcow2", image(work, "a.qcow2"));
    System.setProperty("aws.secretAccessKey", "not-the-secret");
    try (RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, s3.options())) {
      AccessDeniedException e =
          assertThrows(
              AccessDeniedException.class,
              () ->
                  ChainOpener.open(
                      RemoteOpener.parse("s3://" + BUCKET + "/signed/a.qcow2"),
                      options(opener, "s3://" + BUCKET + "/")));
      assertTrue(e.getMessage().contains("S3 403"), e.getMessage());
      assertTrue(e.getMessage().contains("s3://" + BUCKET + "/signed/a.qcow2"), e.getMessage());
      assertFalse(e.getMessage().contains("not-the-secret"), e.getMessage());
      assertFalse(e.getMessage().contains("\n"), e.getMessage());
    } finally {
      System.setProperty("aws.secretAccessKey", S3Proxy.SECRET_KEY);
    }
  }

  @Test
  void missingCredentialsAreAOneLineError(@TempDir Path work) throws Exception {
    s3.put(BUCKET, "signed/b.qcow2", image(work, "b.qcow2"));
    System.clearProperty("aws.accessKeyId");
    System.clearProperty("aws.secretAccessKey");
    String home = System.getProperty("user.home");
    System.setProperty("aws.sharedCredentialsFile", work.resolve("none").toString());
    System.setProperty("aws.configFile", work.resolve("none").toString());
    try (RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, s3.options())) {
      IOException e =
          assertTimeoutPreemptively(
              Duration.ofSeconds(30),
              () ->
                  assertThrows(
                      IOException.class,
                      () ->
                          ChainOpener.open(
                              RemoteOpener.parse("s3://" + BUCKET + "/signed/b.qcow2"),
                              options(opener, "s3://" + BUCKET + "/"))));
      assertTrue(e.getMessage().contains("no AWS credentials found"), e.getMessage());
      assertTrue(e.getMessage().contains("--no-sign-request"), e.getMessage());
      assertFalse(e.getMessage().contains("\n"), e.getMessage());
    } finally {
      System.clearProperty("aws.sharedCredentialsFile");
      System.clearProperty("aws.configFile");
      System.setProperty("user.home", home);
      System.setProperty("aws.accessKeyId", S3Proxy.ACCESS_KEY);
      System.setProperty("aws.secretAccessKey", S3Proxy.SECRET_KEY);
    }
  }

  @Test
  void hostileNamesAreRefused(@TempDir Path work) throws Exception {
    s3.put(BUCKET, "top.qcow2", image(work, "top.qcow2"));
    s3.put("other", "x.qcow2", image(work, "x.qcow2"));
    String[][] cases = {
      {"abs.qcow2", "/etc/passwd", "absolute local path"},
      {"file.qcow2", "file:///etc/passwd", "protocol"},
      {"json.qcow2", "json:{\"file.filename\":\"/etc/passwd\"}", "json:"},
      {"other.qcow2", "s3://other/x.qcow2", "protocol"},
      {"http.qcow2", "http://127.0.0.1:" + s3.port + "/other/x.qcow2", "protocol"},
      {"dotdot.qcow2", "../top.qcow2", "outside the allowed directories"},
      {"root.qcow2", "../../../top.qcow2", "climbs above the bucket's root"},
    };
    for (String[] c : cases) {
      Path p = work.resolve(c[0]);
      HttpImageTest.overlay(p, c[1]);
      s3.put(BUCKET, "hostile/" + c[0], p);
      try (RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, s3.options())) {
        ImageFormatException e =
            assertThrows(
                ImageFormatException.class,
                () ->
                    ChainOpener.open(
                        RemoteOpener.parse("s3://" + BUCKET + "/hostile/" + c[0]),
                        options(opener, "s3://" + BUCKET + "/hostile/")),
                c[1]);
        assertTrue(e.getMessage().contains(c[2]), c[1] + ": " + e.getMessage());
      }
    }
  }

  @Test
  void faultsAreRetriedAndBytesAreExact(@TempDir Path work) throws Exception {
    Path p = image(work, "f.qcow2", "write -c -P 0x62 2M 1M");
    s3.put(BUCKET, "faults/f.qcow2", p);
    Path reference = Qemu.convertRaw(p, work.resolve("f.raw"), null);
    RemoteOptions fast = s3.options().withRetries(Duration.ofSeconds(2), 4, Duration.ofSeconds(20));
    try (FaultProxy proxy = new FaultProxy(s3.port);
        RemoteOpener opener =
            new RemoteOpener(
                PosixOpener.DEFAULT,
                fast.withS3(java.net.URI.create("http://127.0.0.1:" + proxy.port()), false))) {
      proxy.faults.addAll(List.of(FaultProxy.Fault.UNAVAILABLE, FaultProxy.Fault.CLOSE));
      try (BackingChain chain =
          ChainOpener.open(
              RemoteOpener.parse("s3://" + BUCKET + "/faults/f.qcow2"),
              options(opener, "s3://" + BUCKET + "/"))) {
        proxy.faults.addAll(
            List.of(
                FaultProxy.Fault.CUT_BODY, FaultProxy.Fault.UNAVAILABLE, FaultProxy.Fault.SILENCE));
        assertEquals(Qemu.sha256(reference), HttpImageTest.sha256(chain));
      }
      try (BackingChain chain =
          ChainOpener.open(
              RemoteOpener.parse("s3://" + BUCKET + "/faults/f.qcow2"),
              options(opener, "s3://" + BUCKET + "/"))) {
        for (int i = 0; i < 8; i++) {
          proxy.faults.add(FaultProxy.Fault.UNAVAILABLE);
        }
        IOException e =
            assertTimeoutPreemptively(
                Duration.ofSeconds(40),
                () ->
                    assertThrows(
                        IOException.class,
                        () -> chain.read(ByteBuffer.allocate(64 << 10), 3 << 20)));
        assertTrue(e.getMessage().contains("s3://" + BUCKET + "/faults/f.qcow2"), e.getMessage());
      }
      assertTrue(opener.stats().retries() >= 4, opener.stats().toString());
    }
  }

  @Test
  void keysResolveAsPathsWithinTheBucket() throws Exception {
    Location top = S3Location.of("s3://b-1/a/b/top.qcow2");
    assertEquals("s3://b-1/a/base.qcow2", top.resolve("../base.qcow2").toString());
    assertEquals("s3://b-1/a/b/c/d.qcow2", top.resolve("./c//d.qcow2").toString());
    assertEquals("s3://b-1/a/b/x y?.qcow2", top.resolve("x y?.qcow2").toString());
    assertTrue(top.resolve("c/d.qcow2").isInside(top.directory()));
    assertFalse(top.resolve("../base.qcow2").isInside(top.directory()));
    assertFalse(S3Location.of("s3://b-2/a/b/x").isInside(top.directory()));
    assertFalse(S3Location.of("s3://b-1/a/bc/x").isInside(S3Location.of("s3://b-1/a/b")));
    assertTrue(
        S3Location.of("s3://b-1/a/b/x").isInside(S3Location.of("s3://b-1/a/b").realDirectory()));
    assertThrows(IllegalArgumentException.class, () -> top.resolve("../../../x"));
    assertThrows(IllegalArgumentException.class, () -> S3Location.of("s3://B/x"));
    assertThrows(IllegalArgumentException.class, () -> S3Location.of("s3://b-1/a/../x"));
  }
}
