package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import org.jqcowfs.qcow2.testing.ImageMatrix;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.remote.Nginx;
import org.jqcowfs.remote.S3Proxy;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Mounts of images on a real nginx and a real S3 server (S3Proxy), both on 127.0.0.1: the flat file
 * of a URL reads as {@code qemu-img convert} of the local file and walks SEEK_DATA/SEEK_HOLE as
 * QEMU's map says; {@code cp --sparse} of a 4 GiB image holding 128 MiB makes the server send
 * little more than the image file; {@code --rw} on a URL is refused in one line, while {@code
 * --overlay} and {@code --scratch} over a URL take the writes locally (the overlay names the URL,
 * with its format) and leave the server's file as it was.
 */
class RemoteMountIT {
  static final long MIB = 1 << 20;
  @TempDir static Path dir;
  static Nginx nginx;
  static S3Proxy s3;

  @BeforeAll
  static void start() throws Exception {
    nginx = Nginx.start(dir.resolve("nginx"), "");
    s3 = S3Proxy.start(dir.resolve("s3"), "disks");
  }

  @AfterAll
  static void stop() throws Exception {
    nginx.close();
    s3.close();
  }

  @Test
  void anS3MountReadsAndSeeksAsQemuReadsTheLocalImage() throws Exception {
    // the daemon finds server and credentials where the AWS tools look: the environment
    Map<String, String> env =
        Map.of(
            "AWS_ENDPOINT_URL",
            s3.endpoint().toString(),
            "AWS_ACCESS_KEY_ID",
            S3Proxy.ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY",
            S3Proxy.SECRET_KEY,
            "AWS_EC2_METADATA_DISABLED",
            "true");
    for (String name : List.of("zstd-64k", "chain-other-dir")) {
      ImageMatrix.Named named =
          ImageMatrix.all().stream().filter(n -> n.name().equals(name)).findFirst().orElseThrow();
      Path bucket = s3.root.resolve("disks");
      ImageMatrix.Case c = named.recipe().build(Files.createDirectories(bucket.resolve(name)));
      Path reference = Qemu.convertRaw(c.image(), dir.resolve("s3-" + name + ".raw"), null);
      Path mnt = Files.createDirectories(dir.resolve("mnt-s3-" + name));
      String url = "s3://disks/" + bucket.relativize(c.image());
      List<String> cmd =
          List.of(
              Jqcowfs.LAUNCHER.toString(),
              "mount",
              "-f",
              "--allow-dir",
              "s3://disks/" + name + "/",
              url,
              mnt.toString());
      try (Jqcowfs.Mount m = Jqcowfs.Mount.start(mnt, cmd, env)) {
        Path flat = m.file(c.image().getFileName().toString().replaceAll("\\.[^.]*$", "") + ".raw");
        assertEquals(Qemu.sha256(reference), Qemu.sha256(flat), name + ": bytes");
        assertEquals(Holes.qemu(c.image()), Holes.walk(flat), name + ": SEEK_DATA/SEEK_HOLE walk");
      }
    }
  }

  @Test
  void aUrlMountReadsAndSeeksAsQemuReadsTheLocalImage() throws Exception {
    for (String name : List.of("zstd-64k", "extl2-64k", "data-file", "chain-other-dir")) {
      ImageMatrix.Named named =
          ImageMatrix.all().stream().filter(n -> n.name().equals(name)).findFirst().orElseThrow();
      Path caseDir = Files.createDirectories(nginx.root.resolve(name));
      ImageMatrix.Case c = named.recipe().build(caseDir);
      Path reference = Qemu.convertRaw(c.image(), dir.resolve(name + ".raw"), null);
      Path mnt = Files.createDirectories(dir.resolve("mnt-" + name));
      String url = nginx.url(nginx.root.relativize(c.image()).toString());
      try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--allow-dir", nginx.url(name + "/"), url)) {
        Path flat = m.file(c.image().getFileName().toString().replaceAll("\\.[^.]*$", "") + ".raw");
        assertEquals(Qemu.sha256(reference), Qemu.sha256(flat), name + ": bytes");
        assertEquals(Holes.qemu(c.image()), Holes.walk(flat), name + ": SEEK_DATA/SEEK_HOLE walk");
      }
    }
  }

  @Test
  void sparseCopyFetchesLittleMoreThanTheImage() throws Exception {
    Path image = nginx.root.resolve("big.qcow2");
    Qemu.img(nginx.root, "create", "-q", "-f", "qcow2", image.toString(), "4G");
    List<String> writes = new ArrayList<>();
    for (long run : new long[] {16, 2500}) {
      for (int i = 0; i < 64; i++) {
        writes.add("write -q -P " + (1 + i + run % 100) + " " + (run + i) + "M 1M");
      }
    }
    Qemu.io(nginx.root, image.toString(), writes.toArray(String[]::new));
    Path reference = Qemu.convertRaw(image, dir.resolve("big-ref.raw"), null);
    Path copy = dir.resolve("big-copy.raw");
    Path mnt = Files.createDirectories(dir.resolve("mnt-big"));
    int logged = nginx.settledAccessLog().size();
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, nginx.url("big.qcow2"))) {
      Jqcowfs.Run cp =
          Jqcowfs.exec(
              List.of("cp", "--sparse=always", m.file("big.raw").toString(), copy.toString()));
      assertEquals(0, cp.code(), cp.err());
    }
    Jqcowfs.Run cmp = Jqcowfs.exec(List.of("cmp", reference.toString(), copy.toString()));
    assertEquals(0, cmp.code(), "copy differs from qemu-img convert: " + cmp.out());
    List<String> log = nginx.settledAccessLog();
    long sent = 0;
    for (String line : log.subList(logged, log.size())) {
      String[] f = line.split(" ");
      sent += Long.parseLong(f[f.length - 1]);
    }
    long imageBytes = Files.size(image);
    System.out.printf(
        "remote cp --sparse=always: the server sent %d bytes for an image file of %d bytes (%d of"
            + " data)%n",
        sent, imageBytes, 128 * MIB);
    assertTrue(sent >= 128 * MIB, "the access log counts what was sent: " + sent);
    assertTrue(sent <= imageBytes * 12 / 10, "sent " + sent + " bytes for " + imageBytes);
  }

  @Test
  void anOverlayOverAUrlTakesTheWritesAndTheServerFileStaysAsItWas() throws Exception {
    Path base = Files.createDirectories(nginx.root.resolve("ov")).resolve("base.qcow2");
    Qemu.img(base.getParent(), "create", "-q", "-f", "qcow2", base.toString(), "64M");
    Qemu.io(base.getParent(), base.toString(), "write -P 0x31 0 8M", "write -c -P 0x32 16M 4M");
    String baseHash = Qemu.sha256(base);
    String url = nginx.url("ov/base.qcow2");
    Path overlay = dir.resolve("ov-changes.qcow2");
    Path mnt = Files.createDirectories(dir.resolve("mnt-ov"));
    Path pattern = dir.resolve("pattern.bin");
    byte[] bytes = new byte[3 << 20];
    new java.util.Random(41).nextBytes(bytes);
    Files.write(pattern, bytes);
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--overlay", overlay.toString(), url)) {
      Jqcowfs.Run dd =
          Jqcowfs.exec(
              List.of(
                  "dd",
                  "if=" + pattern,
                  "of=" + m.file("ov-changes.raw"),
                  "bs=1M",
                  "seek=6",
                  "conv=notrunc,fsync",
                  "status=none"));
      assertEquals(0, dd.code(), dd.err());
    }
    assertEquals(baseHash, Qemu.sha256(base), "the server's file is untouched");
    String info = Qemu.img(dir, "info", "--output=json", overlay.toString());
    assertTrue(info.contains("\"backing-filename\": \"" + url + "\""), info);
    assertTrue(info.contains("\"backing-filename-format\": \"qcow2\""), info);
    // the oracle: QEMU reads a copy of the overlay over the local base file
    Path local = dir.resolve("ov-local.qcow2");
    Files.copy(overlay, local);
    Qemu.img(dir, "rebase", "-q", "-u", "-b", base.toString(), "-F", "qcow2", local.toString());
    Qemu.Check check = Qemu.check(local);
    assertEquals(0, check.exitStatus(), "qemu-img check: " + check);
    Path reference = Qemu.convertRaw(local, dir.resolve("ov-local.raw"), null);
    // mounted again, the overlay is reused and reads as QEMU reads it
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--overlay", overlay.toString(), url)) {
      assertEquals(Qemu.sha256(reference), Qemu.sha256(m.file("ov-changes.raw")));
    }
    Jqcowfs.Run cmp =
        Jqcowfs.exec(
            List.of(
                "cmp",
                "-n",
                String.valueOf(bytes.length),
                "-i",
                "0:" + (6 << 20),
                pattern.toString(),
                reference.toString()));
    assertEquals(0, cmp.code(), "the written bytes: " + cmp.out());
  }

  @Test
  void aScratchMountOverAUrlThrowsTheWritesAway() throws Exception {
    Path base = Files.createDirectories(nginx.root.resolve("sc")).resolve("disk.qcow2");
    Qemu.img(base.getParent(), "create", "-q", "-f", "qcow2", base.toString(), "16M");
    Qemu.io(base.getParent(), base.toString(), "write -P 0x51 0 4M");
    String baseHash = Qemu.sha256(base);
    Path reference = Qemu.convertRaw(base, dir.resolve("sc.raw"), null);
    Path mnt = Files.createDirectories(dir.resolve("mnt-sc"));
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--scratch", nginx.url("sc/disk.qcow2"))) {
      Jqcowfs.Run dd =
          Jqcowfs.exec(
              List.of(
                  "dd",
                  "if=/dev/zero",
                  "of=" + m.file("disk.raw"),
                  "bs=1M",
                  "count=2",
                  "conv=notrunc,fsync",
                  "status=none"));
      assertEquals(0, dd.code(), dd.err());
      Jqcowfs.Run cmp =
          Jqcowfs.exec(List.of("cmp", "-n", "2097152", "/dev/zero", m.file("disk.raw").toString()));
      assertEquals(0, cmp.code(), "the write reads back: " + cmp.out());
    }
    assertEquals(baseHash, Qemu.sha256(base), "the server's file is untouched");
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, nginx.url("sc/disk.qcow2"))) {
      assertEquals(Qemu.sha256(reference), Qemu.sha256(m.file("disk.raw")), "writes thrown away");
    }
  }

  @Test
  void aWritableMountOfAUrlIsRefusedInOneLine() throws Exception {
    Path image = nginx.root.resolve("rw.qcow2");
    Qemu.img(nginx.root, "create", "-q", "-f", "qcow2", image.toString(), "4M");
    Path mnt = Files.createDirectories(dir.resolve("mnt-rw"));
    Jqcowfs.Run r = Jqcowfs.run("mount", "-f", "--rw", nginx.url("rw.qcow2"), mnt.toString());
    assertEquals(1, r.code(), r.out() + r.err());
    assertTrue(r.err().contains("a remote image is never written"), r.err());
    assertEquals(1, r.err().strip().lines().count(), r.err());
  }
}
