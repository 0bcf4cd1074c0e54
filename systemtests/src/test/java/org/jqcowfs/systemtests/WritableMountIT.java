package org.jqcowfs.systemtests;

import static org.jqcowfs.systemtests.ChannelWrites.writeAt;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@code jqcowfs mount --rw} on real mounts (the kernel backend, and jnr-fuse for a plain image):
 * seeded random pwrites (buffered and O_DIRECT), hole punches and zero ranges through the flat
 * file, and the same changes made to a raw copy of the disk. During the mount every read, and
 * {@code cp --sparse=always} of the flat file, equal the raw copy; after the unmount {@code
 * qemu-img compare} calls the image and the raw copy identical, {@code qemu-img check} finds
 * nothing, an internal snapshot reads as before, and the backing files are unchanged byte for byte.
 */
class WritableMountIT {
  private static final long SIZE = 64L << 20;

  @ParameterizedTest
  @ValueSource(
      strings = {"plain", "extl2-over-compressed", "chain-of-3", "snapshots", "plain jnr-fuse"})
  void writesReadBackAndMatchARawCopy(String kind, @TempDir Path dir) throws Exception {
    String backend = kind.endsWith(" jnr-fuse") ? "jnr-fuse" : "kernel";
    Path top = build(kind.replace(" jnr-fuse", ""), dir);
    Path reference = Qemu.convertRaw(top, dir.resolve("reference.raw"), null);
    List<Path> below = new ArrayList<>();
    try (var files = Files.list(dir)) {
      files.filter(p -> !p.equals(top) && !p.equals(reference)).forEach(below::add);
    }
    List<String> hashes = new ArrayList<>();
    for (Path p : below) {
      hashes.add(Qemu.sha256(p));
    }
    String snapshotBefore = snapshotHash(top, dir);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Random random = new Random(kind.hashCode());
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--rw", "--backend", backend, top.toString())) {
      Path flat = m.file("top.raw");
      assertTrue(Files.isWritable(flat), "the flat file is writable");
      try (FileChannel ch =
              FileChannel.open(flat, StandardOpenOption.READ, StandardOpenOption.WRITE);
          FileChannel ref =
              FileChannel.open(reference, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
        for (int op = 0; op < 60; op++) {
          int length = 1 + random.nextInt(random.nextBoolean() ? 8192 : 2 << 20);
          long offset = (long) (random.nextDouble() * (SIZE - length));
          switch (random.nextInt(8)) {
            case 0 -> { // a hole punched: reads as zeros
              fallocate(flat, "-p", offset, length);
              writeAt(ref, new byte[length], offset);
            }
            case 1 -> { // a zero range
              fallocate(flat, "-z", offset, length);
              writeAt(ref, new byte[length], offset);
            }
            case 2 -> ch.force(false); // fsync
            case 3 -> { // O_DIRECT, 4 KiB-aligned
              long at = offset & ~4095L;
              int blocks = 1 + length / 4096 % 64;
              byte[] data = new byte[blocks * 4096];
              random.nextBytes(data);
              Path src = Files.write(dir.resolve("direct.bin"), data);
              Jqcowfs.Run dd =
                  Jqcowfs.exec(
                      List.of(
                          "dd",
                          "if=" + src,
                          "of=" + flat,
                          "bs=4096",
                          "seek=" + at / 4096,
                          "oflag=direct",
                          "conv=notrunc",
                          "status=none"));
              assertEquals(0, dd.code(), dd.err());
              writeAt(ref, data, at);
            }
            default -> {
              byte[] data = new byte[length];
              random.nextBytes(data);
              writeAt(ch, data, offset);
              writeAt(ref, data, offset);
            }
          }
          if (op % 15 == 14) {
            assertSame(ch, ref, kind + " after op " + op);
          }
        }
        assertSame(ch, ref, kind + " at the end");
      }
      Path copy = dir.resolve("copy.raw");
      Jqcowfs.Run cp =
          Jqcowfs.exec(List.of("cp", "--sparse=always", flat.toString(), copy.toString()));
      assertEquals(0, cp.code(), cp.err());
      assertEquals(
          Qemu.sha256(reference), Qemu.sha256(copy), "cp --sparse=always of the flat file");
      Files.delete(copy);
    }
    Qemu.Check compare = Qemu.compare(top, reference);
    assertEquals(0, compare.exitStatus(), kind + ": qemu-img compare: " + compare);
    Qemu.Check check = Qemu.check(top);
    assertEquals(0, check.exitStatus(), kind + ": qemu-img check: " + check);
    assertEquals(snapshotBefore, snapshotHash(top, dir), kind + ": the internal snapshot");
    for (int i = 0; i < below.size(); i++) {
      assertEquals(hashes.get(i), Qemu.sha256(below.get(i)), below.get(i) + " unchanged");
    }
  }

  /**
   * {@code --overlay} leaves the image it covers byte-identical and keeps the changes in the
   * overlay (reused at the next mount); {@code --scratch} leaves nothing behind: no temporary
   * overlay after the unmount, the image unchanged.
   */
  @org.junit.jupiter.api.Test
  void overlayAndScratchLeaveTheImageAlone(@TempDir Path dir) throws Exception {
    Path image = build("plain", dir);
    String before = Qemu.sha256(image);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path overlay = dir.resolve("sub/changes.qcow2");
    Files.createDirectories(overlay.getParent());
    byte[] data = new byte[200_000];
    new Random(5).nextBytes(data);
    for (int round = 0; round < 2; round++) { // created, then reused
      try (Jqcowfs.Mount m =
              Jqcowfs.Mount.of(mnt, "--overlay", overlay.toString(), image.toString());
          FileChannel ch =
              FileChannel.open(
                  m.file("changes.raw"), StandardOpenOption.READ, StandardOpenOption.WRITE)) {
        writeAt(ch, data, 3_000_000L + round);
      }
    }
    assertEquals(before, Qemu.sha256(image), "--overlay: the image is untouched");
    assertEquals(0, Qemu.check(overlay).exitStatus(), "the overlay checks clean");
    Path tmp = Files.createDirectory(dir.resolve("tmp"));
    List<String> cmd =
        new ArrayList<>(List.of(Jqcowfs.LAUNCHER.toString(), "mount", "-f", "--scratch"));
    cmd.add(image.toString());
    cmd.add(mnt.toString());
    try (Jqcowfs.Mount m =
            Jqcowfs.Mount.start(
                mnt, cmd, java.util.Map.of("JQCOWFS_JAVA_OPTS", "-Djava.io.tmpdir=" + tmp));
        FileChannel ch =
            FileChannel.open(
                m.file("top.raw"), StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      writeAt(ch, data, 0);
      try (var files = Files.list(tmp)) {
        assertEquals(1, files.count(), "the scratch overlay lives in java.io.tmpdir");
      }
    }
    try (var files = Files.list(tmp)) {
      assertEquals(List.of(), files.toList(), "--scratch leaves nothing behind");
    }
    assertEquals(before, Qemu.sha256(image), "--scratch: the image is untouched");
  }

  /**
   * A WRITE costs one request: the mount takes FUSE_HANDLE_KILLPRIV_V2 (its files have no set-id
   * bits or capabilities to drop), so the kernel does not ask GETXATTR security.capability before
   * each write, which halved the random-write IOPS (docs/performance.md).
   */
  @org.junit.jupiter.api.Test
  void aWriteIsOneRequest(@TempDir Path dir) throws Exception {
    Path image = build("plain", dir);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path log = dir.resolve("daemon.log");
    byte[] data = new byte[4096];
    try (Jqcowfs.Mount m =
            Jqcowfs.Mount.of(
                mnt, "--rw", "--debug", "--log-file", log.toString(), image.toString());
        FileChannel ch =
            FileChannel.open(
                m.file("top.raw"), StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      for (int i = 0; i < 200; i++) {
        writeAt(ch, data, i * 65536L); // no writeback cache: each writeAt(2) is a FUSE_WRITE
      }
    }
    List<String> lines = Files.readAllLines(log);
    long writes = lines.stream().filter(l -> l.contains("FUSE_WRITE ")).count();
    long xattrs = lines.stream().filter(l -> l.contains("FUSE_GETXATTR ")).count();
    assertTrue(writes >= 200, writes + " FUSE_WRITEs logged");
    assertTrue(xattrs <= 2, xattrs + " FUSE_GETXATTRs for " + writes + " writes");
    assertEquals(0, Qemu.check(image).exitStatus(), "the image checks clean");
  }

  /**
   * The disk's size, mode and owner are fixed on a writable mount, with either backend: a change is
   * EPERM, asking for the value it has is accepted, and times are accepted (touch works).
   */
  @ParameterizedTest
  @ValueSource(strings = {"kernel", "jnr-fuse"})
  void sizeModeAndOwnerAreFixed(String backend, @TempDir Path dir) throws Exception {
    Path image = build("plain", dir);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, "--rw", "--backend", backend, image.toString())) {
      String flat = m.file("top.raw").toString();
      for (List<String> refused :
          List.of(
              List.of("truncate", "-s", Long.toString(SIZE + 65536), flat),
              List.of("truncate", "-s", "1M", flat),
              List.of("chmod", "0600", flat),
              List.of("chown", "12345", flat))) {
        Jqcowfs.Run r = Jqcowfs.exec(refused);
        assertTrue(
            r.code() != 0 && r.err().contains("Operation not permitted"),
            backend + ": " + refused + " -> " + r);
      }
      String mode =
          Integer.toOctalString(
              (Integer) Files.getAttribute(m.file("top.raw"), "unix:mode") & 07777);
      for (List<String> accepted :
          List.of(
              List.of("truncate", "-s", Long.toString(SIZE), flat),
              List.of("chmod", mode, flat),
              List.of("touch", flat))) {
        Jqcowfs.Run r = Jqcowfs.exec(accepted);
        assertEquals(0, r.code(), backend + ": " + accepted + " -> " + r);
      }
      assertEquals(SIZE, Files.size(m.file("top.raw")), backend + ": the disk's size");
    }
    assertEquals(0, Qemu.check(image).exitStatus(), "the image checks clean");
  }

  /** The hash of snapshot "one" as QEMU reads it, or "" when the image has none. */
  private static String snapshotHash(Path top, Path dir) throws IOException {
    if (!Qemu.img(dir, "snapshot", "-l", top.toString()).contains(" one ")) {
      return "";
    }
    Path raw = dir.resolve("snapshot.raw");
    Files.deleteIfExists(raw);
    String hash = Qemu.sha256(Qemu.convertRaw(top, raw, "one"));
    Files.delete(raw);
    return hash;
  }

  static void fallocate(Path file, String mode, long offset, long length)
      throws IOException, InterruptedException {
    Jqcowfs.Run r =
        Jqcowfs.exec(
            List.of(
                "fallocate",
                mode,
                "-o",
                Long.toString(offset),
                "-l",
                Long.toString(length),
                file.toString()));
    assertEquals(0, r.code(), "fallocate " + mode + ": " + r.err());
  }

  /** Reads both in 1 MiB pieces and compares them. */
  static void assertSame(FileChannel flat, FileChannel ref, String what) throws IOException {
    ByteBuffer a = ByteBuffer.allocate(1 << 20);
    ByteBuffer b = ByteBuffer.allocate(1 << 20);
    for (long at = 0; at < SIZE; at += 1 << 20) {
      a.clear();
      b.clear();
      while (a.hasRemaining() && flat.read(a, at + a.position()) > 0) {}
      while (b.hasRemaining() && ref.read(b, at + b.position()) > 0) {}
      int mismatch = Arrays.mismatch(a.array(), b.array());
      assertEquals(-1, mismatch, what + ": first difference at byte " + (at + mismatch));
    }
  }

  /** The image written into (top.qcow2) and its backing files, made by qemu-img and qemu-io. */
  private static Path build(String kind, Path dir) throws IOException {
    String size = Long.toString(SIZE);
    switch (kind) {
      case "plain" -> {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "top.qcow2", size);
        Qemu.io(dir, "top.qcow2", "write -q -P 0x11 1M 5M", "write -q -z 10M 1M");
      }
      case "extl2-over-compressed" -> {
        Qemu.img(
            dir, "create", "-q", "-f", "qcow2", "-o", "compression_type=zstd", "base.qcow2", size);
        Qemu.io(dir, "base.qcow2", "write -q -c -P 0x22 0 16M", "write -q -P 0x23 30M 4M");
        Qemu.overlay(
            dir, "top.qcow2", "base.qcow2", "qcow2", "extended_l2=on,cluster_size=128k", null);
        Qemu.io(dir, "top.qcow2", "write -q -P 0x24 4M 100k");
      }
      case "chain-of-3" -> {
        Qemu.img(dir, "create", "-q", "-f", "raw", "base.raw", size);
        Qemu.run(dir, "qemu-io", "-f", "raw", "-c", "write -q -P 0x31 0 40M", "base.raw");
        Qemu.overlay(dir, "mid.qcow2", "base.raw", "raw", null, null);
        Qemu.io(dir, "mid.qcow2", "write -q -c -P 0x32 8M 8M", "write -q -z 20M 2M");
        Qemu.overlay(dir, "top.qcow2", "mid.qcow2", "qcow2", null, null);
      }
      case "snapshots" -> {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "top.qcow2", size);
        Qemu.io(dir, "top.qcow2", "write -q -P 0x41 0 20M");
        Qemu.img(dir, "snapshot", "-c", "one", "top.qcow2");
        Qemu.io(dir, "top.qcow2", "write -q -P 0x42 5M 5M");
      }
      default -> throw new IllegalArgumentException(kind);
    }
    return dir.resolve("top.qcow2");
  }
}
