package org.jqcowfs.qcow2.crypto;

import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.UUID;
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
   * PBKDF2 (RFC 8018) with HMAC over {@code hashSpec}, {@code bytes} bytes: Nettle's or OpenSSL's
   * when the library is there ({@link LibCrypto}; Nettle's is QEMU's speed), else BouncyCastle's,
   * which takes the password's raw bytes (a binary key file, a candidate master key) and, in a JVM
   * that compiles with C1 only as the one-shot commands do, runs twice as fast as the JDK's
   * (200,000 SHA-256 iterations: 0.2 s against 0.4 s here).
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
    MessageDigest md = messageDigest(hashSpec);
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

  /**
   * What a new LUKS header is made of, in {@code qemu-img create}'s {@code encrypt.*} option terms.
   *
   * @param cipherAlg {@code encrypt.cipher-alg}: aes-128 or aes-256
   * @param cipherMode {@code encrypt.cipher-mode}: xts or cbc
   * @param ivgenAlg {@code encrypt.ivgen-alg}: plain64, or essiv (with cbc)
   * @param ivgenHashAlg {@code encrypt.ivgen-hash-alg}: sha256 with essiv, else null
   * @param hashAlg {@code encrypt.hash-alg}: the PBKDF2 and anti-forensic hash (sha1, sha256,
   *     sha512)
   * @param iterTimeMillis {@code encrypt.iter-time}: milliseconds of PBKDF2 a key slot costs
   */
  public record Spec(
      String cipherAlg,
      String cipherMode,
      String ivgenAlg,
      String ivgenHashAlg,
      String hashAlg,
      long iterTimeMillis) {
    /** QEMU's defaults: AES-256 in XTS with plain64 IVs, SHA-256, 2 s. */
    public static final Spec DEFAULT = new Spec("aes-256", "xts", "plain64", null, "sha256", 2000);

    /**
     * Checks the combination against what jqcowfs reads back.
     *
     * @throws IllegalArgumentException naming the option and value that is not supported
     */
    public Spec {
      if (!cipherAlg.equals("aes-128") && !cipherAlg.equals("aes-256")) {
        throw new IllegalArgumentException(
            "encrypt.cipher-alg '" + cipherAlg + "' is not supported (aes-128, aes-256)");
      }
      if (!cipherMode.equals("xts") && !cipherMode.equals("cbc")) {
        throw new IllegalArgumentException(
            "encrypt.cipher-mode '" + cipherMode + "' is not supported (xts, cbc)");
      }
      if (!ivgenAlg.equals("plain64") && !(ivgenAlg.equals("essiv") && cipherMode.equals("cbc"))) {
        throw new IllegalArgumentException(
            "encrypt.ivgen-alg '"
                + ivgenAlg
                + "' is not supported with "
                + cipherMode
                + " (plain64; essiv with cbc)");
      }
      if (ivgenAlg.equals("essiv") && ivgenHashAlg == null) {
        ivgenHashAlg = "sha256"; // QEMU's default
      }
      if (ivgenHashAlg != null && !(ivgenAlg.equals("essiv") && ivgenHashAlg.equals("sha256"))) {
        throw new IllegalArgumentException(
            "encrypt.ivgen-hash-alg '" + ivgenHashAlg + "' is not supported (sha256 with essiv)");
      }
      digest(hashAlg);
      if (iterTimeMillis <= 0 || iterTimeMillis > 600_000) {
        throw new IllegalArgumentException(
            "encrypt.iter-time " + iterTimeMillis + " (1 to 600000 milliseconds)");
      }
    }

    /** The LUKS header's cipher mode ("xts-plain64", "cbc-essiv:sha256"). */
    String modeSpec() {
      return cipherMode + "-" + ivgenAlg + (ivgenHashAlg != null ? ":" + ivgenHashAlg : "");
    }

    /** The master key's bytes (an XTS key holds two AES keys). */
    int keyBytes() {
      return (cipherAlg.equals("aes-128") ? 16 : 32) * (cipherMode.equals("xts") ? 2 : 1);
    }
  }

  /**
   * A new LUKS header with key slot 0 set to {@code passphrase}, as {@code
   * qcrypto_block_luks_create} makes it: a random master key, its PBKDF2 digest (iterations: an
   * eighth of {@code iterTimeMillis}'s worth, at least 1000), slot 0's salt and iterations ({@code
   * iterTimeMillis}'s worth, at least 1000), the master key split into 4000 stripes and encrypted
   * with the slot key; the other slots disabled. Costs about twice {@code iterTimeMillis} of CPU,
   * as in QEMU.
   *
   * @param header the header; its {@link LuksHeader#payloadOffset} is the LUKS area's bytes
   * @param keyMaterial slot 0's encrypted key material, to be written at its offset in the area
   */
  public record Created(LuksHeader header, byte[] keyMaterial) {}

  /**
   * The LUKS area's bytes a header made for {@code spec} has ({@code payload_offset}): 4 KiB, then
   * 8 key slots' material, each rounded up to 4 KiB ({@code qcrypto_block_luks_create}).
   */
  public static long areaBytes(Spec spec) {
    return KEY_MATERIAL_START + slotBytes(spec.keyBytes()) * LuksHeader.SLOTS;
  }

  /**
   * Where slot 0's key material starts in the area ({@code QCRYPTO_BLOCK_LUKS_KEY_SLOT_OFFSET}).
   */
  private static final long KEY_MATERIAL_START = 4096;

  /** One slot's key material bytes, rounded up to 4 KiB as cryptsetup lays them out. */
  private static long slotBytes(int keyBytes) {
    return ((long) keyBytes * LuksHeader.STRIPES + 4095) / 4096 * 4096;
  }

  /** Makes a LUKS header and slot 0's key material for {@code passphrase} ({@link Created}). */
  public static Created create(Spec spec, byte[] passphrase) {
    SecureRandom random = new SecureRandom();
    int keyBytes = spec.keyBytes();
    byte[] master = new byte[keyBytes];
    byte[] slotKey = null;
    SectorCipher slotCipher = null;
    try {
      random.nextBytes(master);
      byte[] mkSalt = salt(random);
      byte[] slotSalt = salt(random);
      // One benchmark for both: a PBKDF2 run costs its iterations times the digests it outputs.
      int digestBytes = messageDigest(spec.hashAlg()).getDigestLength();
      long perBlock = iterationsPerSecond(spec.hashAlg(), passphrase, slotSalt, digestBytes);
      long mkIter =
          Math.max(1000, perBlock / blocks(20, digestBytes) * spec.iterTimeMillis() / 1000 / 8);
      long slotIter =
          Math.max(1000, perBlock / blocks(keyBytes, digestBytes) * spec.iterTimeMillis() / 1000);
      if (mkIter > LuksHeader.MAX_ITERATIONS || slotIter > LuksHeader.MAX_ITERATIONS) {
        throw new IllegalArgumentException(
            "encrypt.iter-time "
                + spec.iterTimeMillis()
                + " ms would take "
                + Math.max(mkIter, slotIter)
                + " PBKDF2 iterations here; jqcowfs opens at most "
                + LuksHeader.MAX_ITERATIONS);
      }
      byte[] digest = pbkdf2(spec.hashAlg(), master, mkSalt, (int) mkIter, 20);
      List<Long> offsets = new ArrayList<>();
      for (int i = 0; i < LuksHeader.SLOTS; i++) {
        offsets.add(KEY_MATERIAL_START + slotBytes(keyBytes) * i);
      }
      LuksHeader h =
          new LuksHeader(
              "aes",
              spec.modeSpec(),
              spec.hashAlg(),
              keyBytes,
              digest,
              mkSalt,
              (int) mkIter,
              List.of(new LuksHeader.KeySlot(0, (int) slotIter, slotSalt, offsets.get(0))),
              areaBytes(spec),
              UUID.randomUUID().toString(),
              offsets);
      slotKey = pbkdf2(spec.hashAlg(), passphrase, slotSalt, (int) slotIter, keyBytes);
      byte[] split = afSplit(master, LuksHeader.STRIPES, spec.hashAlg(), random);
      slotCipher = cipher(h, slotKey);
      slotCipher.encrypt(ByteBuffer.wrap(split), 0);
      return new Created(h, split);
    } finally {
      Arrays.fill(master, (byte) 0);
      if (slotKey != null) {
        Arrays.fill(slotKey, (byte) 0);
      }
      if (slotCipher != null) {
        slotCipher.destroy();
      }
    }
  }

  private static int blocks(int outBytes, int digestBytes) {
    return (outBytes + digestBytes - 1) / digestBytes;
  }

  private static byte[] salt(SecureRandom random) {
    byte[] salt = new byte[32];
    random.nextBytes(salt);
    return salt;
  }

  /**
   * PBKDF2 iterations per second of this thread's CPU time ({@code qcrypto_pbkdf2_count_iters}):
   * from 2^15 iterations, ten times more while a run takes under 100 ms, until one takes over 500
   * ms. QEMU fails when a run reads as 0 ms ("Unable to get accurate CPU usage"); here that run
   * counts as under 100 ms.
   */
  static long iterationsPerSecond(String hashAlg, byte[] password, byte[] salt, int outBytes) {
    ThreadMXBean threads = ManagementFactory.getThreadMXBean();
    boolean cpu = threads.isCurrentThreadCpuTimeSupported();
    long iterations = 1 << 15;
    while (true) {
      long start = cpu ? threads.getCurrentThreadCpuTime() : System.nanoTime();
      Arrays.fill(pbkdf2(hashAlg, password, salt, (int) iterations, outBytes), (byte) 0);
      long ms = ((cpu ? threads.getCurrentThreadCpuTime() : System.nanoTime()) - start) / 1_000_000;
      if (ms > 500 || iterations > LuksHeader.MAX_ITERATIONS) {
        return iterations * 1000 / Math.max(ms, 1);
      }
      iterations = ms < 100 ? iterations * 10 : iterations * 1000 / ms;
    }
  }

  /**
   * The anti-forensic split ({@code qcrypto_afsplit_encode}): {@code stripes - 1} random stripes,
   * each xored into a block diffused with the hash after it, then the last stripe the block xor
   * {@code key}; {@link #afMerge} undoes it.
   */
  static byte[] afSplit(byte[] key, int stripes, String hashSpec, SecureRandom random) {
    MessageDigest md = messageDigest(hashSpec);
    int n = key.length;
    byte[] out = new byte[n * stripes];
    byte[] block = new byte[n];
    byte[] stripe = new byte[n];
    for (int i = 0; i < stripes - 1; i++) {
      random.nextBytes(stripe);
      System.arraycopy(stripe, 0, out, i * n, n);
      for (int j = 0; j < n; j++) {
        block[j] ^= stripe[j];
      }
      diffuse(md, block);
    }
    for (int j = 0; j < n; j++) {
      out[(stripes - 1) * n + j] = (byte) (block[j] ^ key[j]);
    }
    Arrays.fill(block, (byte) 0);
    Arrays.fill(stripe, (byte) 0);
    return out;
  }

  private static MessageDigest messageDigest(String hashSpec) {
    try {
      return MessageDigest.getInstance(
          switch (hashSpec) {
            case "sha1" -> "SHA-1";
            case "sha256" -> "SHA-256";
            default -> "SHA-512";
          });
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
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
