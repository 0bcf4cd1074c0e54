package org.jqcowfs.qcow2.crypto;

import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.util.Arrays;
import javax.crypto.Cipher;
import javax.crypto.spec.IvParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * AES in CBC mode per sector, the IV the sector number ({@code cbc-plain64}) or its encryption
 * under the SHA-256 of the key ({@code cbc-essiv:sha256}), as QEMU's {@code crypto/ivgen-plain64.c}
 * and {@code crypto/ivgen-essiv.c}. The JDK's AES/CBC, re-initialised with each sector's IV.
 */
final class Cbc implements SectorCipher {
  private final byte[] key;
  private final byte[] essivKey; // or null for plain64
  private final ThreadLocal<State> states = ThreadLocal.withInitial(State::new);

  private final class State {
    final Cipher cbc;
    final Cipher essiv = essivKey == null ? null : Xts.aes(Cipher.ENCRYPT_MODE, essivKey);
    final SecretKeySpec spec = new SecretKeySpec(key, "AES");
    final byte[] iv = new byte[16];
    final byte[] in = new byte[SECTOR_BYTES];

    State() {
      try {
        cbc = Cipher.getInstance("AES/CBC/NoPadding");
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException("the JDK's AES: " + e.getMessage(), e);
      }
    }
  }

  /**
   * @param key the AES key (16 or 32 bytes); copied
   * @param essiv ESSIV with SHA-256 rather than plain64
   */
  Cbc(byte[] key, boolean essiv) {
    if (key.length != 16 && key.length != 32) {
      throw new IllegalArgumentException("AES key of " + key.length + " bytes (16 or 32)");
    }
    this.key = key.clone();
    this.essivKey = essiv ? sha256(key) : null;
  }

  private static byte[] sha256(byte[] b) {
    try {
      return MessageDigest.getInstance("SHA-256").digest(b);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  @Override
  public void encrypt(ByteBuffer data, long sector) {
    run(data, sector, Cipher.ENCRYPT_MODE);
  }

  @Override
  public void decrypt(ByteBuffer data, long sector) {
    run(data, sector, Cipher.DECRYPT_MODE);
  }

  private void run(ByteBuffer data, long sector, int mode) {
    if (data.remaining() % SECTOR_BYTES != 0) {
      throw new IllegalArgumentException(data.remaining() + " bytes are not whole sectors");
    }
    State s = states.get();
    try {
      for (int at = data.position(); at < data.limit(); at += SECTOR_BYTES, sector++) {
        Arrays.fill(s.iv, (byte) 0);
        for (int i = 0; i < 8; i++) {
          s.iv[i] = (byte) (sector >>> (8 * i));
        }
        if (s.essiv != null) {
          s.essiv.doFinal(s.iv, 0, 16, s.iv, 0);
        }
        s.cbc.init(mode, s.spec, new IvParameterSpec(s.iv));
        data.get(at, s.in);
        data.put(at, s.cbc.doFinal(s.in));
      }
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  @Override
  public void destroy() {
    Arrays.fill(key, (byte) 0);
    if (essivKey != null) {
      Arrays.fill(essivKey, (byte) 0);
    }
  }
}
