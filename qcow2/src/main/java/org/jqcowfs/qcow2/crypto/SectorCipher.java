package org.jqcowfs.qcow2.crypto;

import java.nio.ByteBuffer;

/**
 * A block cipher mode over 512-byte sectors, each with its IV from its sector number (QEMU's {@code
 * qcrypto_block_encrypt_helper}/{@code qcrypto_block_decrypt_helper}: {@code plain64} IVs, or
 * {@code essiv}); in qcow2 the number is the host sector's ({@code crypt_physical_offset}).
 * Implementations keep their JDK ciphers per thread; they are thread-safe. The key bytes are the
 * caller's, to be zeroed by it ({@link #destroy}).
 */
public interface SectorCipher {
  /** Bytes per sector. */
  int SECTOR_BYTES = 512;

  /**
   * Encrypts {@code data}'s remaining bytes in place (a whole number of sectors), the first being
   * sector {@code sector}.
   *
   * @throws IllegalArgumentException if the bytes are not whole sectors
   */
  void encrypt(ByteBuffer data, long sector);

  /** Decrypts in place, as {@link #encrypt} encrypts. */
  void decrypt(ByteBuffer data, long sector);

  /** Zeroes the key material this cipher holds; it is not to be used after. */
  void destroy();

  /**
   * The cipher of an image opened without its key, for its metadata only (QEMU's {@code
   * BDRV_O_NO_IO}): callers check for it before decrypting; using it throws {@link
   * IllegalStateException}.
   */
  SectorCipher LOCKED =
      new SectorCipher() {
        @Override
        public void encrypt(ByteBuffer data, long sector) {
          throw new IllegalStateException("opened without the key");
        }

        @Override
        public void decrypt(ByteBuffer data, long sector) {
          throw new IllegalStateException("opened without the key");
        }

        @Override
        public void destroy() {}
      };
}
