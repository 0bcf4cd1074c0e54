package org.jqcowfs.qcow2.write;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.jqcowfs.qcow2.crypto.SectorCipher;
import org.jqcowfs.storage.Storage;

/**
 * Writes guest bytes to the host offsets of their data clusters: as they are, or, in an image
 * encrypted with LUKS, encrypted (QEMU {@code qcow2_co_encrypt}), each 512-byte sector's IV its
 * host sector number ({@code crypt_physical_offset}). A write that starts or ends inside a sector
 * reads that sector, decrypts it and writes it back whole (QEMU's block layer does this
 * read-modify-write for its 512-byte request alignment); the caller keeps other writes off those
 * sectors meanwhile ({@link ClusterAllocator}'s exclusive claims). Thread-safe.
 */
final class DataWriter {
  private static final int SECTOR = SectorCipher.SECTOR_BYTES;

  /** The largest piece encrypted in one buffer (per thread). */
  private static final int CHUNK_BYTES = 1 << 20;

  private static final ThreadLocal<ByteBuffer> BUFFER = new ThreadLocal<>();

  private final Storage file;
  private final SectorCipher cipher; // or null: written as they are

  DataWriter(Storage file, SectorCipher cipher) {
    this.file = file;
    this.cipher = cipher;
  }

  /** Whether data is encrypted: every write is then whole sectors at the host. */
  boolean encrypted() {
    return cipher != null;
  }

  /**
   * Whether a write of {@code bytes} at host offset {@code host} rewrites sectors it only touches.
   */
  boolean readsAround(long host, long bytes) {
    return cipher != null && ((host | (host + bytes)) & (SECTOR - 1)) != 0;
  }

  /** Writes {@code src}'s remaining bytes (consumed) at host offset {@code host}. */
  void write(ByteBuffer src, long host) throws IOException {
    if (cipher == null) {
      file.write(src, host);
      return;
    }
    while (src.hasRemaining()) {
      long from = host & -SECTOR;
      int head = (int) (host - from);
      int n = Math.min(src.remaining(), CHUNK_BYTES - head);
      long to = (host + n + SECTOR - 1) & -SECTOR;
      int bytes = (int) (to - from);
      ByteBuffer b = buffer(bytes);
      if (head != 0) {
        readSector(b, 0, from);
      }
      if ((host + n) % SECTOR != 0 && (head == 0 || bytes > SECTOR)) {
        readSector(b, bytes - SECTOR, to - SECTOR);
      }
      b.put(head, src, src.position(), n);
      cipher.encrypt(b, from / SECTOR);
      file.write(b, from);
      src.position(src.position() + n);
      host += n;
    }
  }

  /**
   * Decrypts the sector at {@code host} into {@code b} at {@code at}; zeros past the file's end.
   */
  private void readSector(ByteBuffer b, int at, long host) throws IOException {
    ByteBuffer s = b.slice(at, SECTOR);
    int n = file.readUpTo(s.duplicate(), host);
    if (n < SECTOR) {
      // Not written yet (a cluster grown into, its copy-on-write still to come): only the bytes
      // of this write matter there, and the rest is written after it.
      for (int i = Math.max(n, 0); i < SECTOR; i++) {
        s.put(i, (byte) 0);
      }
      return;
    }
    cipher.decrypt(s, host / SECTOR);
  }

  /** This thread's buffer of {@code bytes}, position 0. */
  private static ByteBuffer buffer(int bytes) {
    ByteBuffer b = BUFFER.get();
    if (b == null || b.capacity() < bytes) {
      b = ByteBuffer.allocateDirect(Math.max(bytes, 64 << 10));
      BUFFER.set(b);
    }
    return b.clear().limit(bytes);
  }
}
