package org.jqcowfs.qcow2.crypto;

import java.nio.ByteBuffer;
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

  private void run(ByteBuffer data, long sector, boolean encrypt) {
    if (data.remaining() % SECTOR_BYTES != 0) {
      throw new IllegalArgumentException(data.remaining() + " bytes are not whole sectors");
    }
    State s = states.get();
    Cipher c = encrypt ? s.encrypt : s.decrypt;
    for (int at = data.position(); at < data.limit(); at += SECTOR_BYTES, sector++) {
      tweaks(s, sector);
      data.get(at, s.in);
      for (int i = 0; i < SECTOR_BYTES; i++) {
        s.in[i] ^= s.tweaks[i];
      }
      try {
        c.doFinal(s.in, 0, SECTOR_BYTES, s.out, 0);
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException(e);
      }
      for (int i = 0; i < SECTOR_BYTES; i++) {
        s.out[i] ^= s.tweaks[i];
      }
      data.put(at, s.out);
    }
  }

  /** The 32 tweaks of {@code sector}: E(tweak key, sector) times α^j for block j. */
  private static void tweaks(State s, long sector) {
    Arrays.fill(s.number, (byte) 0);
    for (int i = 0; i < 8; i++) {
      s.number[i] = (byte) (sector >>> (8 * i));
    }
    try {
      s.tweak.doFinal(s.number, 0, 16, s.tweaks, 0);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
    for (int b = 16; b < SECTOR_BYTES; b += 16) {
      int carry = 0;
      for (int i = 0; i < 16; i++) { // little-endian shift left by one bit
        int v = s.tweaks[b - 16 + i] & 0xff;
        s.tweaks[b + i] = (byte) ((v << 1) | carry);
        carry = v >>> 7;
      }
      if (carry != 0) {
        s.tweaks[b] ^= (byte) 0x87;
      }
    }
  }

  @Override
  public void destroy() {
    Arrays.fill(dataKey, (byte) 0);
    Arrays.fill(tweakKey, (byte) 0);
  }
}
