package org.jqcowfs.remote;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.image.Image;
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
 * Images read from a real nginx on 127.0.0.1: every image of the differential matrix, read over
 * HTTP with its whole chain (backing files and data files resolved against the URL), equals {@code
 * qemu-img convert} of the local file, snapshots included; and what a server or an image maker can
 * do wrong is refused at open, naming the URL, with no request to anywhere else.
 */
class HttpImageTest {
  @TempDir static Path dir;
  static Nginx nginx;

  /** A listener on another port of 127.0.0.1 that no test may reach. */
  static ServerSocket elsewhere;

  static final AtomicInteger accepted = new AtomicInteger();

  @BeforeAll
  static void start() throws Exception {
    elsewhere = new ServerSocket(0, 8, InetAddress.getLoopbackAddress());
    Thread t =
        new Thread(
            () -> {
              while (!elsewhere.isClosed()) {
                try {
                  elsewhere.accept().close();
                  accepted.incrementAndGet();
                } catch (IOException e) {
                  return;
                }
              }
            });
    t.setDaemon(true);
    t.start();
    String other = "http://127.0.0.1:" + elsewhere.getLocalPort();
    nginx =
        Nginx.start(
            dir.resolve("nginx"),
            String.join(
                "\n",
                "    location /norange/ { max_ranges 0; }",
                "    location = /hostile/out.qcow2 { return 302 " + other + "/x.qcow2; }",
                "    location = /hostile/up.qcow2 { return 302 /top.qcow2; }",
                "    location = /moved.qcow2 { return 302 /plain/v3-64k.qcow2; }"));
  }

  @AfterAll
  static void stop() throws Exception {
    nginx.close();
    elsewhere.close();
  }

  static RemoteOpener opener() {
    return new RemoteOpener(PosixOpener.DEFAULT, RemoteOptions.DEFAULT);
  }

  static ChainOptions options(RemoteOpener opener, String allowedUrlDir) {
    return ChainOptions.DEFAULT
        .withStorage(opener)
        .withAllowedDirs(List.of(HttpLocation.of(allowedUrlDir)), false, false);
  }

  static List<ImageMatrix.Named> matrix() {
    return ImageMatrix.all();
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("matrix")
  void readsAsQemuReadsTheLocalFile(ImageMatrix.Named named, @TempDir Path work) throws Exception {
    Path caseDir = Files.createDirectories(nginx.root.resolve("matrix").resolve(named.name()));
    ImageMatrix.Case c = named.recipe().build(caseDir);
    String url = nginx.url(nginx.root.relativize(c.image()).toString());
    RemoteOpener opener = opener();
    // the matrix holds a chain whose base lies in a sibling directory ("chain-other-dir")
    ChainOptions options = options(opener, nginx.url("matrix/" + named.name() + "/"));
    Path reference = Qemu.convertRaw(c.image(), work.resolve("qemu.raw"), null);
    try (BackingChain chain = ChainOpener.open(RemoteOpener.parse(url), options)) {
      assertEquals(Files.size(reference), chain.size(), "virtual size");
      assertEquals(Qemu.sha256(reference), sha256(chain), "bytes read over HTTP");
    }
    for (String snapshot : c.snapshots()) {
      Path snapRef =
          Qemu.convertRaw(c.image(), work.resolve("qemu-" + snapshot + ".raw"), snapshot);
      try (BackingChain view =
          ChainOpener.open(RemoteOpener.parse(url), options.withSnapshot(snapshot))) {
        assertEquals(Qemu.sha256(snapRef), sha256(view), "snapshot " + snapshot);
      }
    }
    assertTrue(opener.stats().requests() > 0, "requests were counted");
  }

  /** The SHA-256 of the whole disk, read in 1 MiB requests. */
  static String sha256(Image image) throws Exception {
    MessageDigest md = MessageDigest.getInstance("SHA-256");
    ByteBuffer buf = ByteBuffer.allocate(1 << 20);
    for (long pos = 0; pos < image.size(); pos += buf.capacity()) {
      buf.clear().limit((int) Math.min(buf.capacity(), image.size() - pos));
      image.read(buf, pos);
      md.update(buf.flip());
    }
    return HexFormat.of().formatHex(md.digest());
  }

  /** A qcow2 image at {@code name} below the root, with {@code backing} as its backing name. */
  static Path image(String name, String backing) throws IOException {
    Path p = nginx.root.resolve(name);
    Files.createDirectories(p.getParent());
    if (backing == null) {
      Qemu.img(p.getParent(), "create", "-q", "-f", "qcow2", p.toString(), "4M");
      Qemu.io(p.getParent(), p.toString(), "write -P 0x5a 0 1M");
    } else {
      overlay(p, backing);
    }
    return p;
  }

  /** A 4 MiB qcow2 overlay at {@code p} naming {@code backing} (qcow2) as written, unchecked. */
  static void overlay(Path p, String backing) throws IOException {
    Qemu.img(
        p.getParent(),
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        backing,
        "-F",
        "qcow2",
        p.toString(),
        "4M");
  }

  @Test
  void aServerThatIgnoresRangeIsRefusedWithoutADownload() throws Exception {
    image("norange/a.qcow2", null);
    IOException e =
        assertThrows(
            IOException.class,
            () ->
                ChainOpener.open(
                    RemoteOpener.parse(nginx.url("norange/a.qcow2")),
                    options(opener(), nginx.url(""))));
    assertTrue(e.getMessage().contains("ignores Range"), e.getMessage());
    assertTrue(e.getMessage().contains(nginx.url("norange/a.qcow2")), e.getMessage());
  }

  @Test
  void aMissingImageNamesItsUrl() {
    NoSuchFileException e =
        assertThrows(
            NoSuchFileException.class,
            () ->
                ChainOpener.open(
                    RemoteOpener.parse(nginx.url("none.qcow2")), options(opener(), nginx.url(""))));
    assertTrue(e.getMessage().contains(nginx.url("none.qcow2")), e.getMessage());
    assertTrue(e.getMessage().contains("404"), e.getMessage());
  }

  @Test
  void hostileNamesAreRefusedWithoutARequest() throws Exception {
    image("top.qcow2", null);
    String other = "http://127.0.0.1:" + elsewhere.getLocalPort() + "/x.qcow2";
    String[][] cases = {
      {"hostile/abs.qcow2", "/etc/passwd", "absolute local path"},
      {"hostile/file.qcow2", "file:///etc/passwd", "protocol"},
      {"hostile/json.qcow2", "json:{\"file.filename\":\"/etc/passwd\"}", "json:"},
      {"hostile/other.qcow2", other, "protocol"},
      {"hostile/dotdot.qcow2", "../top.qcow2", "outside the allowed directories"},
      {"hostile/deep.qcow2", "a/../../../top.qcow2", "outside the allowed directories"},
    };
    int before = accepted.get();
    for (String[] c : cases) {
      image(c[0], c[1]);
      String url = nginx.url(c[0]);
      int logged = nginx.settledAccessLog().size();
      ImageFormatException e =
          assertThrows(
              ImageFormatException.class,
              () ->
                  ChainOpener.open(
                      RemoteOpener.parse(url), options(opener(), nginx.url("hostile/"))),
              c[1]);
      assertTrue(e.getMessage().contains(c[2]), c[1] + ": " + e.getMessage());
      List<String> log = nginx.settledAccessLog();
      for (String line : log.subList(logged, log.size())) {
        assertTrue(line.contains("/" + c[0] + " "), "only the image itself was asked for: " + line);
      }
    }
    for (String redirect : new String[] {"hostile/out.qcow2", "hostile/up.qcow2"}) {
      IOException e =
          assertThrows(
              IOException.class,
              () ->
                  ChainOpener.open(
                      RemoteOpener.parse(nginx.url(redirect)),
                      options(opener(), nginx.url("hostile/"))));
      assertTrue(e.getMessage().contains("outside its origin and directory"), e.getMessage());
    }
    Thread.sleep(100);
    assertEquals(before, accepted.get(), "a listener on another origin received a connection");
  }

  @Test
  void aLocalOverlayFollowsItsUrlBackingFileOnlyWhereAllowed(@TempDir Path work) throws Exception {
    Path base = image("overlay-base/base.qcow2", null);
    String url = nginx.url("overlay-base/base.qcow2");
    Path overlay = work.resolve("overlay.qcow2");
    overlay(overlay, url);
    Qemu.io(work, overlay.toString(), "write -P 0x77 512k 1M");
    Location top = RemoteOpener.parse(overlay.toString());
    ImageFormatException e =
        assertThrows(
            ImageFormatException.class,
            () -> ChainOpener.open(top, ChainOptions.DEFAULT.withStorage(opener())));
    assertTrue(e.getMessage().contains("outside the allowed directories"), e.getMessage());
    ImageFormatException other =
        assertThrows(
            ImageFormatException.class,
            () -> ChainOpener.open(top, options(opener(), nginx.url("plain/"))));
    assertTrue(other.getMessage().contains(url), other.getMessage());
    // the oracle: the same overlay with the local base file as its backing file
    Path local = work.resolve("local.qcow2");
    Files.copy(overlay, local);
    Qemu.img(work, "rebase", "-q", "-u", "-b", base.toString(), "-F", "qcow2", local.toString());
    Path reference = Qemu.convertRaw(local, work.resolve("local.raw"), null);
    try (BackingChain chain =
        ChainOpener.open(top, options(opener(), nginx.url("overlay-base/")))) {
      assertEquals(2, chain.layers().size());
      assertEquals(Qemu.sha256(reference), sha256(chain));
    }
  }

  @Test
  void theDiskCacheServesALaterOpenAndNeverAStaleOrDamagedBlock(@TempDir Path work)
      throws Exception {
    Path p = image("disk-cache/a.qcow2", null);
    Qemu.io(p.getParent(), p.toString(), "write -c -P 0x13 2M 1M");
    Path reference = Qemu.convertRaw(p, work.resolve("a.raw"), null);
    Path cacheDir = work.resolve("cache");
    Location url = RemoteOpener.parse(nginx.url("disk-cache/a.qcow2"));
    RemoteOptions withDisk = RemoteOptions.DEFAULT.withCacheDir(cacheDir);
    try (BackingChain chain =
        ChainOpener.open(
            url, options(new RemoteOpener(PosixOpener.DEFAULT, withDisk), nginx.url("")))) {
      assertEquals(Qemu.sha256(reference), sha256(chain));
    }
    // a later open: only the probes at open (bytes=0-0) go to the server
    int before = nginx.settledAccessLog().size();
    RemoteOpener again = new RemoteOpener(PosixOpener.DEFAULT, withDisk);
    try (BackingChain chain = ChainOpener.open(url, options(again, nginx.url("")))) {
      assertEquals(Qemu.sha256(reference), sha256(chain));
    }
    List<String> log = nginx.settledAccessLog();
    List<String> after = log.subList(before, log.size());
    assertTrue(after.stream().allMatch(l -> l.endsWith(" 206 1")), "only probes: " + after);
    assertTrue(again.stats().diskHitBytes() > 0, again.stats().toString());
    // a damaged block is fetched again
    try (var files = Files.list(cacheDir)) {
      Path blocks = files.filter(f -> f.toString().endsWith(".blocks")).findFirst().orElseThrow();
      try (var ch =
          java.nio.channels.FileChannel.open(blocks, java.nio.file.StandardOpenOption.WRITE)) {
        ch.write(ByteBuffer.wrap(new byte[] {1, 2, 3}), 0);
      }
    }
    before = nginx.settledAccessLog().size();
    try (BackingChain chain =
        ChainOpener.open(
            url, options(new RemoteOpener(PosixOpener.DEFAULT, withDisk), nginx.url("")))) {
      assertEquals(Qemu.sha256(reference), sha256(chain));
    }
    log = nginx.settledAccessLog();
    List<String> refetched = log.subList(before, log.size());
    assertEquals(
        1, refetched.stream().filter(l -> !l.endsWith(" 206 1")).count(), "the damaged block");
    // a replaced object (another ETag) is read from the server
    Path fresh = work.resolve("fresh.qcow2");
    Qemu.img(work, "create", "-q", "-f", "qcow2", fresh.toString(), "4M");
    Qemu.io(work, fresh.toString(), "write -P 0x22 0 4M");
    Files.move(fresh, p, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
    Files.setLastModifiedTime(
        p, java.nio.file.attribute.FileTime.fromMillis(System.currentTimeMillis() + 5000));
    Path newReference = Qemu.convertRaw(p, work.resolve("new.raw"), null);
    try (BackingChain chain =
        ChainOpener.open(
            url, options(new RemoteOpener(PosixOpener.DEFAULT, withDisk), nginx.url("")))) {
      assertEquals(Qemu.sha256(newReference), sha256(chain));
    }
  }

  @Test
  void concurrentReadsOfOneRangeFetchItOnce() throws Exception {
    Path p = image("concurrent/a.qcow2", null);
    Location url = RemoteOpener.parse(nginx.url("concurrent/a.qcow2"));
    try (BackingChain chain = ChainOpener.open(url, options(opener(), nginx.url("")))) {
      chain.read(ByteBuffer.allocate(1), 0); // the L2 table (and guest cluster 0) fetched now
      int before = nginx.settledAccessLog().size();
      int readers = 8;
      java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(readers);
      java.util.concurrent.ExecutorService pool =
          java.util.concurrent.Executors.newFixedThreadPool(readers);
      List<java.util.concurrent.Future<ByteBuffer>> reads = new java.util.ArrayList<>();
      for (int i = 0; i < readers; i++) {
        reads.add(
            pool.submit(
                () -> {
                  ByteBuffer b = ByteBuffer.allocate(256 << 10);
                  start.await();
                  chain.read(b, 256 << 10);
                  return b.flip();
                }));
      }
      for (var r : reads) {
        assertEquals(reads.get(0).get(), r.get());
      }
      pool.shutdown();
      long sent = 0;
      List<String> log = nginx.settledAccessLog();
      for (String line : log.subList(before, log.size())) {
        sent += Long.parseLong(line.substring(line.lastIndexOf(' ') + 1));
      }
      assertTrue(sent <= 256 << 10, readers + " readers of 256 KiB made the server send " + sent);
    }
    assertTrue(Files.exists(p));
  }

  @Test
  void aRedirectWithinTheDirectoryIsFollowed() throws Exception {
    Path local = image("plain/v3-64k.qcow2", null);
    try (BackingChain chain =
        ChainOpener.open(
            RemoteOpener.parse(nginx.url("moved.qcow2")), options(opener(), nginx.url("")))) {
      Path reference = Qemu.convertRaw(local, dir.resolve("moved.raw"), null);
      assertEquals(Qemu.sha256(reference), sha256(chain));
    }
  }

  @Test
  void aReplacedObjectFailsWhatIsNotCachedAndNeverMixes() throws Exception {
    Path p = image("replaced/a.qcow2", null);
    Qemu.io(p.getParent(), p.toString(), "write -P 0x11 2M 1M");
    RemoteOpener opener = opener();
    try (BackingChain chain =
        ChainOpener.open(
            RemoteOpener.parse(nginx.url("replaced/a.qcow2")), options(opener, nginx.url("")))) {
      ByteBuffer first = ByteBuffer.allocate(64 << 10);
      chain.read(first, 0); // cached now
      Path fresh = dir.resolve("fresh.qcow2");
      Qemu.img(dir, "create", "-q", "-f", "qcow2", fresh.toString(), "4M");
      Qemu.io(dir, fresh.toString(), "write -P 0x22 0 4M");
      Files.move(fresh, p, java.nio.file.StandardCopyOption.REPLACE_EXISTING);
      // nginx's ETag is mtime-size: make sure the mtime moved
      Files.setLastModifiedTime(
          p, java.nio.file.attribute.FileTime.fromMillis(System.currentTimeMillis() + 5000));
      ByteBuffer again = ByteBuffer.allocate(64 << 10);
      chain.read(again, 0);
      assertEquals(first.flip(), again.flip(), "cached bytes still read");
      IOException e =
          assertThrows(IOException.class, () -> chain.read(ByteBuffer.allocate(1 << 20), 2 << 20));
      assertTrue(e.getMessage().contains("changed since it was opened"), e.getMessage());
    }
  }

  @Test
  void secretsInTheUrlAreNotShown() {
    Location l =
        HttpLocation.of("https://user:secret@example.com:8443/a/b.qcow2?X-Amz-Signature=abc");
    assertEquals("https://example.com:8443/a/b.qcow2?…", l.toString());
    assertFalse(l.resolve("c.qcow2").toString().contains("secret"));
  }

  @Test
  void namesResolveAsQemuResolvesThemAgainstAUrl() throws Exception {
    Location top = HttpLocation.of("http://h/a/b/top.qcow2");
    assertEquals("http://h/a/base.qcow2", top.resolve("../base.qcow2").toString());
    assertEquals("http://h/a/b/x%20y.qcow2", top.resolve("x y.qcow2").toString());
    assertEquals("http://h/a/b/q%3Fx.qcow2", top.resolve("q?x.qcow2").toString());
    assertTrue(top.resolve("c/d.qcow2").isInside(top.directory()));
    // an --allow-dir prefix given without its slash, whose last segment looks like a scheme
    Location prefix = HttpLocation.of("http://h/a/b:c").realDirectory();
    assertEquals("http://h/a/b:c/", prefix.toString());
    assertTrue(HttpLocation.of("http://h/a/b:c/x.qcow2").isInside(prefix));
    assertFalse(HttpLocation.of("http://h/a/b:cd/x.qcow2").isInside(prefix));
    assertFalse(top.resolve("../base.qcow2").isInside(top.directory()));
    assertFalse(HttpLocation.of("http://h:81/a/b/x").isInside(top.directory()));
    assertFalse(HttpLocation.of("https://h/a/b/x").isInside(top.directory()));
  }
}
