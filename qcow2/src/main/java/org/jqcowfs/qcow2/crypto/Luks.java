package org.jqcowfs.qcow2.crypto;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Arrays;
import org.bouncycastle.crypto.Digest;
import org.bouncycastle.crypto.digests.SHA1Digest;
import org.bouncycastle.crypto.digests.SHA256Digest;
import org.bouncycastle.crypto.digests.SHA512Digest;
import org.bouncycastle.crypto.generators.PKCS5S2ParametersGenerator;
import org.bouncycastle.crypto.params.KeyParameter;

/**
 * Opens a LUKS1 key slot as cryptsetup and QEMU's {@code qcrypto_block_luks_load_key} do: the
 * passphrase through PBKDF2 (BouncyCastle's, which takes the passphrase's raw bytes: a key file
 * need not be text) into the slot's key, which decrypts the split key material (sectors numbered
 * from 0), merged by the anti-forensic splitter ({@code qcrypto_afsplit_decode}) into a candidate
 * master key, accepted when its own PBKDF2 digest matches the header's. Key material lives in
 * arrays zeroed as soon as they are not needed; the master key is handed to the data cipher, whose
 * {@link SectorCipher#destroy} zeroes its copy.
 */
public final class Luks {
  private Luks() {}

  /** Reads bytes of the LUKS area (offsets from the LUKS header's first byte). */
  public interface Area {
    void readFully(ByteBuffer dst, long offset) throws IOException;
  }

  /**
   * Checks that the header's cipher, mode and hash are ones jqcowfs opens: AES in XTS with plain64,
   * or CBC with plain64 or ESSIV (SHA-256); SHA-1, SHA-256 or SHA-512.
   *
   * @throws IllegalArgumentException naming the one that is not
   */
  public static void checkSupported(LuksHeader h) {
    if (!h.cipherName().equals("aes")) {
      throw new IllegalArgumentException(
          "LUKS cipher '" + h.cipherName() + "' is not supported (aes only)");
    }
    boolean xts = h.cipherMode().equals("xts-plain64");
    boolean cbc =
        h.cipherMode().equals("cbc-essiv:sha256")
            || h.cipherMode().equals("cbc-plain64")
            || h.cipherMode().equals("cbc-plain");
    if (!xts && !cbc) {
      throw new IllegalArgumentException(
          "LUKS cipher mode '"
              + h.cipherMode()
              + "' is not supported (xts-plain64, cbc-plain64,"
              + " cbc-essiv:sha256)");
    }
    if ((xts && h.keyBytes() == 16) || (cbc && h.keyBytes() == 64)) {
      throw new IllegalArgumentException(
          "LUKS key of " + h.keyBytes() + " bytes for aes-" + h.cipherMode());
    }
    digest(h.hashSpec());
  }

  /**
   * Tries {@code passphrase} on every active key slot, in slot order.
   *
   * @return the data cipher made from the master key, or null when no slot opens
   * @throws IllegalArgumentException if the header names what {@link #checkSupported} refuses
   * @throws IOException if the key material cannot be read
   */
  public static SectorCipher unlock(LuksHeader h, Area area, byte[] passphrase) throws IOException {
    checkSupported(h);
    for (LuksHeader.KeySlot slot : h.slots()) {
      byte[] master = tryKeySlot(h, slot, area, passphrase);
      if (master != null) {
        try {
          return cipher(h, master);
        } finally {
          Arrays.fill(master, (byte) 0);
        }
      }
    }
    return null;
  }

  /** The master key if {@code passphrase} opens {@code slot}, else null. */
  private static byte[] tryKeySlot(
      LuksHeader h, LuksHeader.KeySlot slot, Area area, byte[] passphrase) throws IOException {
    byte[] slotKey = pbkdf2(h.hashSpec(), passphrase, slot.salt(), slot.iterations(), h.keyBytes());
    ByteBuffer split = ByteBuffer.allocate(h.splitKeyBytes());
    byte[] splitBytes = split.array();
    SectorCipher c = null;
    try {
      area.readFully(split, slot.keyMaterialOffset());
      c = cipher(h, slotKey);
      c.decrypt(split.clear(), 0);
      byte[] master = afMerge(splitBytes, h.keyBytes(), LuksHeader.STRIPES, h.hashSpec());
      byte[] digest = pbkdf2(h.hashSpec(), master, h.mkDigestSalt(), h.mkDigestIterations(), 20);
      if (MessageDigest.isEqual(digest, h.mkDigest())) {
        return master;
      }
      Arrays.fill(master, (byte) 0);
      return null;
    } finally {
      Arrays.fill(slotKey, (byte) 0);
      Arrays.fill(splitBytes, (byte) 0);
      if (c != null) {
        c.destroy();
      }
    }
  }

  /**
   * The cipher of qcow2's legacy AES method ({@code qcrypto_block_qcow_init}): AES-128-CBC with
   * plain64 IVs, the key {@code passphrase}'s bytes up to the first NUL and at most 16, zero-padded
   * (the caller numbers sectors by guest offset: {@code crypt_physical_offset} is false).
   */
  public static SectorCipher legacyAes(byte[] passphrase) {
    byte[] key = new byte[16];
    for (int i = 0; i < 16 && i < passphrase.length && passphrase[i] != 0; i++) {
      key[i] = passphrase[i];
    }
    try {
      return new Cbc(key, false);
    } finally {
      Arrays.fill(key, (byte) 0);
    }
  }

  /** The data cipher of the header's mode with {@code key} (copied). */
  static SectorCipher cipher(LuksHeader h, byte[] key) {
    return h.cipherMode().equals("xts-plain64")
        ? new Xts(key)
        : new Cbc(key, h.cipherMode().equals("cbc-essiv:sha256"));
  }

  /**
   * PBKDF2 (RFC 8018) with HMAC over {@code hashSpec}, {@code bytes} bytes: OpenSSL's when
   * libcrypto is there ({@link LibCrypto}: QEMU's speed), else BouncyCastle's, which takes the
   * password's raw bytes (a binary key file, a candidate master key) and, in a JVM that compiles
   * with C1 only as the one-shot commands do, runs twice as fast as the JDK's (200,000 SHA-256
   * iterations: 0.2 s against 0.4 s here).
   */
  static byte[] pbkdf2(String hashSpec, byte[] password, byte[] salt, int iterations, int bytes) {
    byte[] fast = LibCrypto.pbkdf2(hashSpec, password, salt, iterations, bytes);
    if (fast != null) {
      return fast;
    }
    PKCS5S2ParametersGenerator g = new PKCS5S2ParametersGenerator(digest(hashSpec));
    g.init(password, salt, iterations);
    return ((KeyParameter) g.generateDerivedParameters(bytes * 8)).getKey();
  }

  private static Digest digest(String hashSpec) {
    return switch (hashSpec) {
      case "sha1" -> new SHA1Digest();
      case "sha256" -> new SHA256Digest();
      case "sha512" -> new SHA512Digest();
      default ->
          throw new IllegalArgumentException(
              "LUKS hash '" + hashSpec + "' is not supported (sha1, sha256, sha512)");
    };
  }

  /**
   * The anti-forensic merge ({@code qcrypto_afsplit_decode}): the stripes xored in turn into a
   * block that is diffused with the hash between stripes.
   */
  static byte[] afMerge(byte[] split, int blockBytes, int stripes, String hashSpec) {
    MessageDigest md;
    try {
      md =
          MessageDigest.getInstance(
              switch (hashSpec) {
                case "sha1" -> "SHA-1";
                case "sha256" -> "SHA-256";
                default -> "SHA-512";
              });
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
    byte[] block = new byte[blockBytes];
    for (int i = 0; i < stripes; i++) {
      for (int j = 0; j < blockBytes; j++) {
        block[j] ^= split[i * blockBytes + j];
      }
      if (i < stripes - 1) {
        diffuse(md, block);
      }
    }
    return block;
  }

  /** {@code hash_diffuse}: each digest-sized piece replaced by H(be32(index) || piece). */
  private static void diffuse(MessageDigest md, byte[] block) {
    int digestBytes = md.getDigestLength();
    for (int i = 0, at = 0; at < block.length; i++, at += digestBytes) {
      int n = Math.min(digestBytes, block.length - at);
      md.update(new byte[] {(byte) (i >>> 24), (byte) (i >>> 16), (byte) (i >>> 8), (byte) i});
      md.update(block, at, n);
      byte[] d = md.digest();
      System.arraycopy(d, 0, block, at, n);
      Arrays.fill(d, (byte) 0);
    }
  }
}
