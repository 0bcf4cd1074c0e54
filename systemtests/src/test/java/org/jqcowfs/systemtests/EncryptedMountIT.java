package org.jqcowfs.systemtests;

import static org.jqcowfs.systemtests.ChannelWrites.writeAt;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Random;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Images encrypted with LUKS written through real mounts: {@code --rw} on an image QEMU encrypted,
 * and {@code --overlay} into an encrypted overlay {@code jqcowfs create} made over it (another
 * passphrase). Seeded unaligned pwrites, hole punches and zero ranges go to the flat file and to a
 * raw copy; reads during the mount equal the copy; after the unmount {@code qemu-img compare}
 * (given the secrets) calls the image and the copy identical, {@code qemu-img check} is clean, and
 * the image file holds no plaintext of what was written.
 */
class EncryptedMountIT {
  private static final long SIZE = 64L << 20; // WritableMountIT.assertSame compares this much
  private static final String LUKS =
      "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10";
  private static final byte[] MARK =
      "jqcowfs-mount-plaintext-mark-0123456789".getBytes(StandardCharsets.US_ASCII);

  @Test
  void rwAndEncryptedOverlayWriteCiphertextOnly(@TempDir Path dir) throws Exception {
    Path pass = Files.writeString(dir.resolve("pass"), "mount horse");
    Path image = dir.resolve("enc.qcow2");
    Qemu.createWithSecret(dir, image, LUKS, Long.toString(SIZE));
    String io = "driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s";
    Qemu.run(
        dir,
        "qemu-io",
        "--object",
        "secret,id=s,file=pass",
        "--image-opts",
        io,
        "-c",
        "write -q -P 0x5c 0 8M");
    Path reference = convert(dir, io, "reference.raw", "secret,id=s,file=pass");
    Path mnt = Files.createDirectory(dir.resolve("mnt"));

    Jqcowfs.Run none = Jqcowfs.run("mount", "--rw", image.toString(), mnt.toString());
    assertEquals(1, none.code(), none.err());
    assertEquals(
        "jqcowfs: " + image + ": encrypted with LUKS: give --key-file", none.err().strip());

    try (Jqcowfs.Mount m =
        Jqcowfs.Mount.of(mnt, "--rw", "--key-file", pass.toString(), image.toString())) {
      exercise(m.file("enc.raw"), reference, dir, 11);
    }
    Qemu.Check same = compare(dir, io, reference, "secret,id=s,file=pass");
    assertEquals(0, same.exitStatus(), "--rw: " + same.json() + same.stderr());
    assertClean(dir, io, "secret,id=s,file=pass");
    assertNoMark(image);

    // An encrypted overlay with its own passphrase over the encrypted image.
    String before = Qemu.sha256(image);
    Path pass2 = Files.writeString(dir.resolve("pass2"), "overlay horse");
    Jqcowfs.Run made =
        Jqcowfs.run(
            "create",
            "-q",
            "-b",
            "enc.qcow2",
            "-F",
            "qcow2",
            "-o",
            "encrypt.format=luks,encrypt.iter-time=10",
            "--key-file",
            pass2.toString(),
            dir.resolve("over.qcow2").toString());
    assertEquals(0, made.code(), made.err());
    try (Jqcowfs.Mount m =
        Jqcowfs.Mount.of(
            mnt,
            "--overlay",
            dir.resolve("over.qcow2").toString(),
            "--key-file",
            pass.toString(),
            "--key-file",
            pass2.toString(),
            image.toString())) {
      exercise(m.file("over.raw"), reference, dir, 12);
    }
    assertEquals(before, Qemu.sha256(image), "--overlay: the image is untouched");
    String over =
        "driver=qcow2,file.filename=over.qcow2,encrypt.key-secret=t,backing.encrypt.key-secret=s";
    String[] secrets = {"secret,id=s,file=pass", "secret,id=t,file=pass2"};
    Qemu.Check overSame = compare(dir, over, reference, secrets);
    assertEquals(0, overSame.exitStatus(), "--overlay: " + overSame.json() + overSame.stderr());
    assertClean(dir, over, secrets);
    assertNoMark(dir.resolve("over.qcow2"));
  }

  /** Seeded writes, punches and zero ranges to {@code flat} and {@code reference}, compared. */
  private static void exercise(Path flat, Path reference, Path dir, long seed) throws Exception {
    Random random = new Random(seed);
    try (FileChannel ch =
            FileChannel.open(flat, StandardOpenOption.READ, StandardOpenOption.WRITE);
        FileChannel ref =
            FileChannel.open(reference, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      for (int op = 0; op < 40; op++) {
        int length = 1 + random.nextInt(random.nextBoolean() ? 3000 : 1 << 20);
        long offset = (long) (random.nextDouble() * (SIZE - length));
        switch (random.nextInt(6)) {
          case 0 -> {
            WritableMountIT.fallocate(flat, "-p", offset, length);
            writeAt(ref, new byte[length], offset);
          }
          case 1 -> {
            WritableMountIT.fallocate(flat, "-z", offset, length);
            writeAt(ref, new byte[length], offset);
          }
          case 2 -> ch.force(false);
          default -> {
            byte[] data = new byte[length];
            random.nextBytes(data);
            if (length > MARK.length) {
              System.arraycopy(MARK, 0, data, 0, MARK.length);
            }
            writeAt(ch, data, offset);
            writeAt(ref, data, offset);
          }
        }
      }
      WritableMountIT.assertSame(ch, ref, flat + " at the end");
    }
  }

  private static Path convert(Path dir, String opts, String out, String... secrets)
      throws Exception {
    return Qemu.convertRawOpts(dir, opts, dir.resolve(out), secrets);
  }

  private static Qemu.Check compare(Path dir, String opts, Path raw, String... secrets)
      throws Exception {
    return Qemu.compareOpts(dir, opts, "driver=raw,file.filename=" + raw, secrets);
  }

  private static void assertClean(Path dir, String opts, String... secrets) throws Exception {
    Qemu.Check check = Qemu.checkOpts(dir, opts, secrets);
    assertEquals(0, check.exitStatus(), opts + ": check: " + check.json() + check.stderr());
  }

  private static void assertNoMark(Path image) throws Exception {
    byte[] file = Files.readAllBytes(image);
    String text = new String(file, StandardCharsets.ISO_8859_1);
    assertTrue(
        !text.contains(new String(MARK, StandardCharsets.ISO_8859_1)),
        image + " holds written data as plaintext");
  }
}
