package org.jqcowfs.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.qcow2.crypto.SectorCipher;
import org.jqcowfs.qcow2.format.SubclusterType;
import org.jqcowfs.storage.Storage;

/**
 * The decoder of an encrypted image (QEMU {@code qcow2_co_decrypt}): a data run's host bytes are
 * read whole 512-byte sectors at a time and decrypted in place, each sector's IV its host sector
 * number with LUKS ({@code crypt_physical_offset}), its guest sector number with the legacy AES
 * method; compressed runs go to the compressed reader as they are. Thread-safe: each call reads
 * into its own buffer.
 */
final class EncryptedClusterReader implements ClusterDecoder {
  private static final int SECTOR = SectorCipher.SECTOR_BYTES;

  private final Storage file;
  private final SectorCipher cipher;
  private final ClusterDecoder compressed;
  private final boolean guestIv;

  /**
   * @param guestIv number sectors by guest offset (the legacy AES method), not by host offset
   *     (LUKS)
   */
  EncryptedClusterReader(
      Storage file, SectorCipher cipher, ClusterDecoder compressed, boolean guestIv) {
    this.file = file;
    this.cipher = cipher;
    this.compressed = compressed;
    this.guestIv = guestIv;
  }

  @Override
  public void read(List<Part> parts) throws IOException {
    if (cipher == SectorCipher.LOCKED) {
      throw new IOException(file.location() + ": encrypted data: opened without the key");
    }
    List<Part> packed = new ArrayList<>();
    for (Part p : parts) {
      if (p.run().type() == SubclusterType.COMPRESSED) {
        packed.add(p);
        continue;
      }
      long host = p.run().hostOffset() + (p.guestOffset() - p.run().guestOffset());
      int n = p.dst().remaining();
      if (host % SECTOR == 0 && n % SECTOR == 0) { // whole sectors: decrypted where they land
        ByteBuffer dst = p.dst().duplicate();
        file.readFully(dst.duplicate(), host);
        cipher.decrypt(dst, (guestIv ? p.guestOffset() : host) / SECTOR);
        continue;
      }
      long from = host & -SECTOR;
      long to = (host + p.dst().remaining() + SECTOR - 1) & -SECTOR;
      ByteBuffer sectors = ByteBuffer.allocate((int) (to - from));
      file.readFully(sectors, from);
      long guestFrom = p.guestOffset() - (host - from); // clusters keep in-sector offsets
      cipher.decrypt(sectors.flip(), (guestIv ? guestFrom : from) / SECTOR);
      p.dst().duplicate().put(sectors.slice((int) (host - from), p.dst().remaining()));
    }
    if (!packed.isEmpty()) {
      compressed.read(packed);
    }
  }
}
