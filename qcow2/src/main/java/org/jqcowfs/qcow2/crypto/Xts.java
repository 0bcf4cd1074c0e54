package org.jqcowfs.qcow2.crypto;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.security.GeneralSecurityException;
import java.util.Arrays;
import javax.crypto.Cipher;
import javax.crypto.spec.SecretKeySpec;

/**
 * AES in XTS mode (IEEE 1619, NIST SP 800-38E) with {@code plain64} tweaks, as QEMU's {@code
 * xts-plain64} ({@code crypto/xts.c}): the key's first half encrypts the data, its second half the
 * tweak (the sector number, little-endian, in a 16-byte block); within a sector each 16-byte
 * block's tweak is the previous one times α in GF(2^128). Built on the JDK's AES in ECB mode
 * (hardware-accelerated): a sector's 32 tweaks are computed first, so that each direction is one
 * ECB call per sector. Sectors are whole blocks: no ciphertext stealing.
 */
final class Xts implements SectorCipher {
  private final byte[] dataKey;
  private final byte[] tweakKey;
  private final ThreadLocal<State> states = ThreadLocal.withInitial(State::new);

  /** One thread's ciphers and buffers. */
  private final class State {
    final Cipher encrypt = aes(Cipher.ENCRYPT_MODE, dataKey);
    final Cipher decrypt = aes(Cipher.DECRYPT_MODE, dataKey);
    final Cipher tweak = aes(Cipher.ENCRYPT_MODE, tweakKey);
    final byte[] tweaks = new byte[SECTOR_BYTES];
    final byte[] in = new byte[SECTOR_BYTES];
    final byte[] out = new byte[SECTOR_BYTES];
    final byte[] number = new byte[16];
  }

  /**
   * @param key the XTS key: twice the AES key's bytes (32 for AES-128, 64 for AES-256); copied
   * @throws IllegalArgumentException for another length
   */
  Xts(byte[] key) {
    if (key.length != 32 && key.length != 64) {
      throw new IllegalArgumentException("XTS key of " + key.length + " bytes (32 or 64)");
    }
    this.dataKey = Arrays.copyOfRange(key, 0, key.length / 2);
    this.tweakKey = Arrays.copyOfRange(key, key.length / 2, key.length);
  }

  static Cipher aes(int mode, byte[] key) {
    try {
      Cipher c = Cipher.getInstance("AES/ECB/NoPadding");
      c.init(mode, new SecretKeySpec(key, "AES"));
      return c;
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("the JDK's AES: " + e.getMessage(), e);
    }
  }

  @Override
  public void encrypt(ByteBuffer data, long sector) {
    run(data, sector, true);
  }

  @Override
  public void decrypt(ByteBuffer data, long sector) {
    run(data, sector, false);
  }

  /** Little-endian longs in byte arrays: the tweaks and the xors a long at a time. */
  private static final VarHandle LE =
      MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);

  private void run(ByteBuffer data, long sector, boolean encrypt) {
    if (data.remaining() % SECTOR_BYTES != 0) {
      throw new IllegalArgumentException(data.remaining() + " bytes are not whole sectors");
    }
    State s = states.get();
    Cipher c = encrypt ? s.encrypt : s.decrypt;
    for (int at = data.position(); at < data.limit(); at += SECTOR_BYTES, sector++) {
      tweaks(s, sector);
      data.get(at, s.in);
      for (int i = 0; i < SECTOR_BYTES; i += 8) {
        LE.set(s.in, i, (long) LE.get(s.in, i) ^ (long) LE.get(s.tweaks, i));
      }
      try {
        c.doFinal(s.in, 0, SECTOR_BYTES, s.out, 0);
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException(e);
      }
      for (int i = 0; i < SECTOR_BYTES; i += 8) {
        LE.set(s.out, i, (long) LE.get(s.out, i) ^ (long) LE.get(s.tweaks, i));
      }
      data.put(at, s.out);
    }
  }

  /**
   * The 32 tweaks of {@code sector}: E(tweak key, sector) times α^j for block j, α's product a
   * shift left by one bit of the little-endian 128-bit value, 0x87 folded in on a carry.
   */
  private static void tweaks(State s, long sector) {
    Arrays.fill(s.number, (byte) 0);
    LE.set(s.number, 0, sector);
    try {
      s.tweak.doFinal(s.number, 0, 16, s.tweaks, 0);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
    long lo = (long) LE.get(s.tweaks, 0);
    long hi = (long) LE.get(s.tweaks, 8);
    for (int b = 16; b < SECTOR_BYTES; b += 16) {
      long carry = hi >>> 63;
      hi = (hi << 1) | (lo >>> 63);
      lo = (lo << 1) ^ (carry * 0x87);
      LE.set(s.tweaks, b, lo);
      LE.set(s.tweaks, b + 8, hi);
    }
  }

  @Override
  public void destroy() {
    Arrays.fill(dataKey, (byte) 0);
    Arrays.fill(tweakKey, (byte) 0);
  }
}
