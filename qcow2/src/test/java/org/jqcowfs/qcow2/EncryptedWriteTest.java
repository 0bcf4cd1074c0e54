package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.jqcowfs.image.Image;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Writes to images QEMU encrypts with LUKS ({@code qcow2_co_encrypt}): the same writes,
 * write-zeroes and discards given to our writer and to {@code qemu-io} on a copy (both with the
 * passphrase) leave images {@code qemu-img compare} finds identical, each {@code qemu-img check}
 * clean; the pattern written is nowhere in the image file as plaintext. Unaligned writes rewrite
 * the sectors they touch (read, decrypt, merge, encrypt), and four threads writing neighbouring
 * 100-byte pieces of the same sectors at once lose none of them.
 */
class EncryptedWriteTest {
  @TempDir Path dir;

  private static final String SECRET = "secret,id=s,file=pass";
  private static final long SIZE = 8L << 20;

  /** Written as data everywhere, so that a plaintext copy in the file is found. */
  private static final byte[] MARK = "jqcowfs-plaintext-mark:".getBytes(StandardCharsets.US_ASCII);

  @ParameterizedTest
  @ValueSource(
      strings = {
        "cluster_size=64k",
        "cluster_size=512,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,"
            + "encrypt.ivgen-hash-alg=sha256",
        "extended_l2=on,cluster_size=64k",
        "compat=0.10",
        "overlay:cluster_size=64k",
      })
  void writesAsQemuIoWithoutPlaintextInTheFile(String layout) throws Exception {
    Files.writeString(dir.resolve("pass"), "correct horse");
    boolean overlay = layout.startsWith("overlay:");
    String opts = layout.replace("overlay:", "");
    String io = "driver=qcow2,file.filename=ours.qcow2,encrypt.key-secret=s";
    List<String> create =
        new ArrayList<>(List.of("qemu-img", "create", "-q", "-f", "qcow2", "--object", SECRET));
    if (overlay) { // an encrypted overlay over a plain base with data
      Qemu.img(dir, "create", "-q", "-f", "qcow2", "base.qcow2", Long.toString(SIZE));
      Qemu.io(dir, "base.qcow2", "write -q -P 0xb1 0 5M");
      create.addAll(List.of("-b", "base.qcow2", "-F", "qcow2"));
    }
    create.addAll(
        List.of(
            "-o",
            opts + ",encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10",
            "ours.qcow2",
            Long.toString(SIZE)));
    Qemu.createEncrypted(dir, dir.resolve("ours.qcow2"), create);
    Qemu.run(dir, "qemu-io", "--object", SECRET, "--image-opts", io, "-c", "write -q -P 7 1M 1M");
    Path theirs = Files.copy(dir.resolve("ours.qcow2"), dir.resolve("theirs.qcow2"));

    Random random = new Random(layout.hashCode());
    List<String> commands = new ArrayList<>();
    try (Qcow2Image image = openWritable(dir.resolve("ours.qcow2"));
        Image backing = overlay ? Qcow2Image.open(dir.resolve("base.qcow2")) : null) {
      if (backing != null) {
        image.setBacking(backing);
      }
      for (int op = 0; op < 40; op++) {
        long length = 1 + random.nextInt(random.nextBoolean() ? 1500 : 200_000);
        long offset = (long) (random.nextDouble() * (SIZE - length));
        int kind = random.nextInt(8);
        if (kind == 0) {
          image.writeZeroes(offset, length, random.nextBoolean());
          commands.add("write -q -z " + offset + " " + length);
        } else if (kind == 1) {
          image.discard(offset, length);
          commands.add("discard -q " + offset + " " + length);
        } else {
          // qemu-io writes one pattern byte: the mark is written by both sides as a second write
          int pattern = 1 + op % 254;
          ByteBuffer data = ByteBuffer.allocate((int) length);
          java.util.Arrays.fill(data.array(), (byte) pattern);
          image.write(data, offset);
          commands.add("write -q -P " + pattern + " " + offset + " " + length);
        }
      }
      // The mark, at an unaligned offset inside a written cluster and in a new one.
      for (long at : new long[] {(1 << 20) + 777, 6_000_001}) {
        image.write(ByteBuffer.wrap(MARK), at);
      }
      concurrentPieces(image, 3_000_003);
      image.flush();
    }
    List<String> io2 = new ArrayList<>(List.of("qemu-io", "--object", SECRET, "--image-opts"));
    io2.add(io.replace("ours.qcow2", "theirs.qcow2"));
    for (String c : commands) {
      io2.addAll(List.of("-c", c));
    }
    Qemu.run(dir, io2);
    // qemu-io cannot write arbitrary bytes: the mark and the pieces go in through a raw file
    Path raw = dir.resolve("after.raw");
    Qemu.convertRawOpts(dir, io.replace("ours.qcow2", "theirs.qcow2"), raw, SECRET);
    try (var ch = java.nio.channels.FileChannel.open(raw, java.nio.file.StandardOpenOption.WRITE)) {
      for (long at : new long[] {(1 << 20) + 777, 6_000_001}) {
        ch.write(ByteBuffer.wrap(MARK), at);
      }
      ch.write(expectedPieces(), 3_000_003);
    }
    Qemu.Check same = Qemu.compareOpts(dir, io, "driver=raw,file.filename=" + raw, SECRET);
    assertEquals(0, same.exitStatus(), layout + ": " + same.json() + same.stderr());
    Qemu.Check check = Qemu.checkOpts(dir, io, SECRET);
    assertEquals(0, check.exitStatus(), layout + ": check: " + check.json() + check.stderr());
    byte[] file = Files.readAllBytes(dir.resolve("ours.qcow2"));
    assertEquals(-1, indexOf(file, MARK), layout + ": the mark in the file as plaintext");
  }

  /** Threads at once, each writing every fourth 100-byte piece of a 64 KiB range. */
  private static final int THREADS = 4;

  private static final int PIECE = 100;
  private static final int PIECES = 640;

  private static void concurrentPieces(Qcow2Image image, long at) throws Exception {
    image.write(ByteBuffer.allocate(PIECE * PIECES), at); // allocated first: the pieces in place
    ExecutorService pool = Executors.newFixedThreadPool(THREADS);
    try {
      List<Future<?>> done = new ArrayList<>();
      for (int t = 0; t < THREADS; t++) {
        int thread = t;
        done.add(
            pool.submit(
                () -> {
                  for (int p = thread; p < PIECES; p += THREADS) {
                    image.write(piece(p), at + (long) p * PIECE);
                  }
                  return null;
                }));
      }
      for (Future<?> f : done) {
        f.get();
      }
    } finally {
      pool.shutdown();
    }
  }

  private static ByteBuffer piece(int p) {
    byte[] b = new byte[PIECE];
    java.util.Arrays.fill(b, (byte) (0x40 + p % 61));
    return ByteBuffer.wrap(b);
  }

  private static ByteBuffer expectedPieces() {
    ByteBuffer all = ByteBuffer.allocate(PIECE * PIECES);
    for (int p = 0; p < PIECES; p++) {
      all.put(piece(p));
    }
    return all.flip();
  }

  private Qcow2Image openWritable(Path image) throws IOException {
    byte[] key = Files.readAllBytes(dir.resolve("pass"));
    return Qcow2Image.open(
        image,
        new Qcow2Options(-1, null, null, HostFileOptions.DEFAULT.withWritable(true))
            .withPassphrases(List.of(key)));
  }

  private static int indexOf(byte[] hay, byte[] needle) {
    outer:
    for (int i = 0; i + needle.length <= hay.length; i++) {
      for (int j = 0; j < needle.length; j++) {
        if (hay[i + j] != needle[j]) {
          continue outer;
        }
      }
      return i;
    }
    return -1;
  }
}
