package org.jqcowfs.qcow2.crypto;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link LuksHeader} and {@link Luks} against images QEMU encrypts: qemu-img creates a LUKS qcow2
 * image with AES-128-XTS and SHA-1, AES-256-CBC-plain64 and SHA-512 (the secret from a file;
 * AES-256-XTS and CBC-ESSIV with SHA-256 are read end to end in the cli's EncryptedImageTest),
 * qemu-io writes a pattern; the key slot opens with the passphrase, not with another, and the data
 * cluster's host bytes (where qemu-img map puts them) decrypt, by host sector number, to the
 * pattern.
 */
class LuksTest {
  @TempDir Path dir;

  /** {@code cipher-alg:cipher-mode:ivgen-alg:hash-alg}, as qemu-img's encrypt.* options. */
  @ParameterizedTest
  @ValueSource(strings = {"aes-256:xts:plain64:sha256", "aes-256:cbc:essiv:sha512"})
  void opensWhatQemuEncrypts(String spec) throws IOException {
    String[] p = spec.split(":");
    Files.writeString(dir.resolve("pass"), "correct horse");
    String opts =
        "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=100,encrypt.cipher-alg="
            + p[0]
            + ",encrypt.cipher-mode="
            + p[1]
            + ",encrypt.ivgen-alg="
            + p[2]
            + (p[2].equals("essiv") ? ",encrypt.ivgen-hash-alg=sha256" : "")
            + ",encrypt.hash-alg="
            + p[3];
    create(opts, "4M");
    String imageOpts = "driver=qcow2,file.filename=img.qcow2,encrypt.key-secret=s";
    Qemu.run(
        dir,
        "qemu-io",
        "--object",
        "secret,id=s,file=pass",
        "--image-opts",
        imageOpts,
        "-c",
        "write -q -P 0x5a 1M 64k");
    Path image = dir.resolve("img.qcow2");
    long host = hostOffset(image, 1 << 20); // QEMU's map gives no offset for encrypted data
    long[] area = luksArea(image);
    LuksHeader h = header(image, area);
    assertEquals(p[3], h.hashSpec());
    Luks.Area reader = (dst, offset) -> read(image, dst, area[0] + offset);
    assertNull(Luks.unlock(h, reader, "wrong horse".getBytes(StandardCharsets.UTF_8)));
    SectorCipher c = Luks.unlock(h, reader, "correct horse".getBytes(StandardCharsets.UTF_8));
    assertNotNull(c);
    ByteBuffer data = ByteBuffer.allocate(64 << 10);
    read(image, data, host);
    c.decrypt(data.clear(), host / 512);
    byte[] want = new byte[64 << 10];
    java.util.Arrays.fill(want, (byte) 0x5a);
    assertArrayEquals(want, data.array(), spec);
    c.encrypt(data.clear(), host / 512);
    ByteBuffer again = ByteBuffer.allocate(64 << 10);
    read(image, again, host);
    assertArrayEquals(again.array(), data.array(), spec + ": encrypting gives QEMU's bytes");
    c.destroy();
  }

  @Test
  void pbkdf2IsRfc8018sThroughEitherLibrary() {
    byte[] p = "password".getBytes(StandardCharsets.US_ASCII);
    byte[] salt = "salt".getBytes(StandardCharsets.US_ASCII);
    assertArrayEquals( // RFC 6070, PBKDF2-HMAC-SHA1, 2 iterations
        java.util.HexFormat.of().parseHex("ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957"),
        Luks.pbkdf2("sha1", p, salt, 2, 20));
    byte[] binary = new byte[] {(byte) 0xff, 0, (byte) 0xc3, 0x28}; // not UTF-8
    for (String hash : new String[] {"sha1", "sha256", "sha512"}) {
      org.bouncycastle.crypto.generators.PKCS5S2ParametersGenerator g =
          new org.bouncycastle.crypto.generators.PKCS5S2ParametersGenerator(
              switch (hash) {
                case "sha1" -> new org.bouncycastle.crypto.digests.SHA1Digest();
                case "sha256" -> new org.bouncycastle.crypto.digests.SHA256Digest();
                default -> new org.bouncycastle.crypto.digests.SHA512Digest();
              });
      g.init(binary, salt, 1000);
      byte[] bc =
          ((org.bouncycastle.crypto.params.KeyParameter) g.generateDerivedParameters(64 * 8))
              .getKey();
      byte[] openSsl = LibCrypto.openSsl(hash, binary, salt, 1000, 64);
      assertNotNull(openSsl, "libcrypto is installed with openssl (make deps)");
      assertArrayEquals(bc, openSsl, hash + ": OpenSSL");
      byte[] nettle = LibCrypto.nettle(hash, binary, salt, 1000, 64);
      assertNotNull(nettle, "libnettle is installed with qemu-utils (make deps)");
      assertArrayEquals(bc, nettle, hash + ": Nettle");
    }
  }

  @Test
  void refusesHostileHeaders() throws IOException {
    Files.writeString(dir.resolve("pass"), "x");
    create("encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=100", "1M");
    Path image = dir.resolve("img.qcow2");
    long[] area = luksArea(image);
    ByteBuffer good = ByteBuffer.allocate(LuksHeader.BYTES);
    read(image, good, area[0]);
    assertThrows(IllegalArgumentException.class, () -> edit(good, 164, -1, area)); // 2^32-1 iter
    assertThrows(IllegalArgumentException.class, () -> edit(good, 208 + 44, 3999, area)); // stripes
    assertThrows(
        IllegalArgumentException.class, () -> edit(good, 208 + 40, 0x7fffffff, area)); // offset
    assertThrows(IllegalArgumentException.class, () -> edit(good, 208, 0x1234, area)); // active
    assertThrows(IllegalArgumentException.class, () -> edit(good, 108, 24, area)); // key bytes
    LuksHeader twofish = LuksHeader.decode(withString(good, 8, "twofish"), area[1]);
    IllegalArgumentException e =
        assertThrows(IllegalArgumentException.class, () -> Luks.checkSupported(twofish));
    assertEquals("LUKS cipher 'twofish' is not supported (aes only)", e.getMessage());
  }

  /** img.qcow2 made by qemu-img with {@code -o opts}, the secret from the file pass. */
  private void create(String opts, String size) throws IOException {
    Qemu.createWithSecret(dir, dir.resolve("img.qcow2"), opts, size);
  }

  private static LuksHeader edit(ByteBuffer good, int at, int value, long[] area) {
    ByteBuffer b = ByteBuffer.allocate(LuksHeader.BYTES).put(good.duplicate().clear()).clear();
    b.putInt(at, value);
    return LuksHeader.decode(b, area[1]);
  }

  private static ByteBuffer withString(ByteBuffer good, int at, String s) {
    ByteBuffer b = ByteBuffer.allocate(LuksHeader.BYTES).put(good.duplicate().clear()).clear();
    for (int i = 0; i < 32; i++) {
      b.put(at + i, i < s.length() ? (byte) s.charAt(i) : 0);
    }
    return b;
  }

  private static LuksHeader header(Path image, long[] area) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(LuksHeader.BYTES);
    read(image, b, area[0]);
    return LuksHeader.decode(b.clear(), area[1]);
  }

  /** The host offset of guest byte {@code guest}, from the L1 and L2 tables (64 KiB clusters). */
  private static long hostOffset(Path image, long guest) throws IOException {
    ByteBuffer h = ByteBuffer.allocate(104);
    read(image, h, 0);
    long cs = 1L << h.getInt(20);
    long l1 = h.getLong(40);
    ByteBuffer e = ByteBuffer.allocate(8);
    read(image, e, l1 + 8 * (guest / (cs * (cs / 8))));
    long l2 = e.getLong(0) & 0x00fffffffffffe00L;
    read(image, e.clear(), l2 + 8 * ((guest / cs) % (cs / 8)));
    return (e.getLong(0) & 0x00fffffffffffe00L) + guest % cs;
  }

  /** The full disk encryption header extension's offset and length (test-side parse). */
  private static long[] luksArea(Path image) throws IOException {
    ByteBuffer h = ByteBuffer.allocate(4096);
    read(image, h, 0);
    assertEquals(2, h.getInt(32), "crypt_method LUKS");
    int at = h.getInt(100);
    while (at + 8 <= h.capacity()) {
      int type = h.getInt(at);
      int len = h.getInt(at + 4);
      if (type == 0x0537BE77) {
        return new long[] {h.getLong(at + 8), h.getLong(at + 16)};
      }
      if (type == 0) {
        break;
      }
      at += 8 + ((len + 7) & ~7);
    }
    throw new AssertionError("no encryption header extension");
  }

  private static void read(Path file, ByteBuffer dst, long at) throws IOException {
    try (FileChannel ch = FileChannel.open(file)) {
      while (dst.hasRemaining()) {
        if (ch.read(dst, at + dst.position()) < 0) {
          break;
        }
      }
    }
  }
}
