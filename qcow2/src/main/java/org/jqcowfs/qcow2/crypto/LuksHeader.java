package org.jqcowfs.qcow2.crypto;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * A LUKS1 header (cryptsetup's on-disk format, version 1; QEMU {@code crypto/block-luks.c}), as
 * qcow2 keeps it in the clusters its full disk encryption header extension names. Every field is
 * the image maker's word: {@link #decode} checks each against what QEMU accepts and the area it
 * must fit in, so that no later read or allocation is sized by an unchecked value.
 *
 * @param cipherName e.g. "aes"
 * @param cipherMode e.g. "xts-plain64", "cbc-essiv:sha256", "cbc-plain64"
 * @param hashSpec the PBKDF2 and anti-forensic hash: "sha1", "sha256" or "sha512"
 * @param keyBytes the master key's bytes: 16, 32 or 64
 * @param mkDigest the master key's PBKDF2 digest (20 bytes)
 * @param mkDigestSalt its salt (32 bytes)
 * @param mkDigestIterations its iterations
 * @param slots the active key slots, in slot order
 * @param payloadOffset the payload offset in bytes ({@code payload_offset} sectors times 512): in
 *     qcow2 the LUKS area's bytes, and nothing else
 * @param uuid the UUID as written (ASCII, up to 40 characters)
 * @param keyMaterialOffsets each of the 8 key slots' key material offset in bytes, active or not
 */
public record LuksHeader(
    String cipherName,
    String cipherMode,
    String hashSpec,
    int keyBytes,
    byte[] mkDigest,
    byte[] mkDigestSalt,
    int mkDigestIterations,
    List<KeySlot> slots,
    long payloadOffset,
    String uuid,
    List<Long> keyMaterialOffsets) {

  /** The header's bytes. */
  public static final int BYTES = 592;

  /** QEMU's {@code QCRYPTO_BLOCK_LUKS_STRIPES}: the only stripe count it opens. */
  public static final int STRIPES = 4000;

  /**
   * The most PBKDF2 iterations opened (2^25, about 30 s of SHA-256 here): a header asking for more
   * would keep an open busy for minutes to hours; cryptsetup's default for 2 s is a few million.
   */
  public static final long MAX_ITERATIONS = 1L << 25;

  /** Key slots in a LUKS1 header. */
  public static final int SLOTS = 8;

  private static final int SLOT_ACTIVE = 0x00AC71F3;
  private static final int SLOT_INACTIVE = 0x0000DEAD;

  /**
   * An active key slot.
   *
   * @param index 0..7
   * @param iterations PBKDF2 iterations for the passphrase
   * @param salt 32 bytes
   * @param keyMaterialOffset byte offset of the split key material in the LUKS area
   */
  public record KeySlot(int index, int iterations, byte[] salt, long keyMaterialOffset) {}

  /** The split key material's bytes of each slot: {@link #keyBytes} times {@link #STRIPES}. */
  public int splitKeyBytes() {
    return keyBytes * STRIPES;
  }

  /**
   * Decodes and checks a LUKS1 header.
   *
   * @param b the header's {@link #BYTES} bytes from position 0
   * @param areaBytes the LUKS area's length in bytes (the key material must lie inside)
   * @throws IllegalArgumentException naming the field and its value when QEMU would refuse it, or
   *     when it lies outside the area or past {@link #MAX_ITERATIONS}
   */
  public static LuksHeader decode(ByteBuffer b, long areaBytes) {
    if (b.remaining() < BYTES) {
      throw new IllegalArgumentException("LUKS header: " + b.remaining() + " bytes, not " + BYTES);
    }
    byte[] magic = new byte[6];
    b.get(0, magic);
    if (!java.util.Arrays.equals(
        magic, new byte[] {'L', 'U', 'K', 'S', (byte) 0xba, (byte) 0xbe})) {
      throw new IllegalArgumentException("LUKS header: bad magic");
    }
    int version = b.getShort(6) & 0xffff;
    if (version != 1) {
      throw new IllegalArgumentException("LUKS header: version " + version + " (only 1)");
    }
    String cipherName = string(b, 8, 32);
    String cipherMode = string(b, 40, 32);
    String hashSpec = string(b, 72, 32);
    long keyBytes = b.getInt(108) & 0xffffffffL;
    if (keyBytes != 16 && keyBytes != 32 && keyBytes != 64) {
      throw new IllegalArgumentException("LUKS header: key_bytes " + keyBytes);
    }
    byte[] mkDigest = new byte[20];
    b.get(112, mkDigest);
    byte[] mkSalt = new byte[32];
    b.get(132, mkSalt);
    long mkIter = iterations(b.getInt(164), "mk_digest_iter");
    List<KeySlot> slots = new ArrayList<>();
    List<Long> offsets = new ArrayList<>();
    for (int i = 0; i < SLOTS; i++) {
      int at = 208 + 48 * i;
      offsets.add((b.getInt(at + 40) & 0xffffffffL) * 512);
      int active = b.getInt(at);
      if (active == SLOT_INACTIVE) {
        continue;
      }
      if (active != SLOT_ACTIVE) {
        throw new IllegalArgumentException(
            "LUKS header: key slot " + i + " active 0x" + Integer.toHexString(active));
      }
      long iter = iterations(b.getInt(at + 4), "key slot " + i + " iterations");
      byte[] salt = new byte[32];
      b.get(at + 8, salt);
      long offset = (b.getInt(at + 40) & 0xffffffffL) * 512;
      long stripes = b.getInt(at + 44) & 0xffffffffL;
      if (stripes != STRIPES) {
        throw new IllegalArgumentException(
            "LUKS header: key slot " + i + " stripes " + stripes + " (QEMU opens " + STRIPES + ")");
      }
      if (offset < BYTES || offset + keyBytes * STRIPES > areaBytes) {
        throw new IllegalArgumentException(
            "LUKS header: key slot "
                + i
                + " key material at byte "
                + offset
                + " ("
                + keyBytes * STRIPES
                + " bytes) lies outside the "
                + areaBytes
                + "-byte LUKS area");
      }
      slots.add(new KeySlot(i, (int) iter, salt, offset));
    }
    if (slots.isEmpty()) {
      throw new IllegalArgumentException("LUKS header: no active key slot");
    }
    return new LuksHeader(
        cipherName,
        cipherMode,
        hashSpec,
        (int) keyBytes,
        mkDigest,
        mkSalt,
        (int) mkIter,
        slots,
        (b.getInt(104) & 0xffffffffL) * 512,
        string(b, 168, 40),
        offsets);
  }

  /**
   * This header's {@link #BYTES} bytes as LUKS1 lays them out (big-endian; the slots not in {@link
   * #slots} disabled, their key material offsets from {@link #keyMaterialOffsets}).
   */
  public ByteBuffer encode() {
    ByteBuffer b = ByteBuffer.allocate(BYTES);
    b.put(new byte[] {'L', 'U', 'K', 'S', (byte) 0xba, (byte) 0xbe}).putShort((short) 1);
    putString(b, 8, cipherName, 32);
    putString(b, 40, cipherMode, 32);
    putString(b, 72, hashSpec, 32);
    b.putInt(104, (int) (payloadOffset / 512)).putInt(108, keyBytes);
    b.put(112, mkDigest).put(132, mkDigestSalt).putInt(164, mkDigestIterations);
    putString(b, 168, uuid, 40);
    for (int i = 0; i < SLOTS; i++) {
      int at = 208 + 48 * i;
      b.putInt(at, SLOT_INACTIVE);
      b.putInt(at + 40, (int) (keyMaterialOffsets.get(i) / 512)).putInt(at + 44, STRIPES);
    }
    for (KeySlot slot : slots) {
      int at = 208 + 48 * slot.index();
      b.putInt(at, SLOT_ACTIVE).putInt(at + 4, slot.iterations()).put(at + 8, slot.salt());
    }
    return b.clear();
  }

  /** The cipher as QEMU names it in {@code info}: "aes-256" (an XTS key holds two). */
  public String cipherAlg() {
    return cipherName + "-" + (cipherMode.startsWith("xts-") ? keyBytes / 2 : keyBytes) * 8;
  }

  /** The block mode ("xts", "cbc"). */
  public String blockMode() {
    return cipherMode.substring(0, cipherMode.indexOf('-') < 0 ? 0 : cipherMode.indexOf('-'));
  }

  /** The IV generator ("plain64", "essiv", "plain"). */
  public String ivgenAlg() {
    String iv = cipherMode.substring(cipherMode.indexOf('-') + 1);
    return iv.contains(":") ? iv.substring(0, iv.indexOf(':')) : iv;
  }

  /** ESSIV's hash ("sha256"), or null for another IV generator. */
  public String ivgenHashAlg() {
    return cipherMode.contains(":") ? cipherMode.substring(cipherMode.indexOf(':') + 1) : null;
  }

  private static void putString(ByteBuffer b, int at, String s, int bytes) {
    byte[] a = s.getBytes(StandardCharsets.US_ASCII);
    if (a.length >= bytes) {
      throw new IllegalArgumentException("'" + s + "' is too long for the LUKS header");
    }
    b.put(at, a);
  }

  private static long iterations(int field, String name) {
    long v = field & 0xffffffffL;
    if (v == 0 || v > MAX_ITERATIONS) {
      throw new IllegalArgumentException(
          "LUKS header: " + name + " " + v + " (1 to " + MAX_ITERATIONS + " are opened)");
    }
    return v;
  }

  /** A NUL-terminated ASCII field. */
  private static String string(ByteBuffer b, int at, int bytes) {
    byte[] f = new byte[bytes];
    b.get(at, f);
    int n = 0;
    while (n < bytes && f[n] != 0) {
      n++;
    }
    return new String(f, 0, n, StandardCharsets.US_ASCII);
  }
}
