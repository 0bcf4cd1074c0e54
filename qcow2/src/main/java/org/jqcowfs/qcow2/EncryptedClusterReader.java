package org.jqcowfs.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.qcow2.crypto.SectorCipher;
import org.jqcowfs.qcow2.format.SubclusterType;
import org.jqcowfs.storage.Storage;

/**
 * The decoder of an image encrypted with LUKS (QEMU {@code qcow2_co_decrypt}): a data run's host
 * bytes are read whole 512-byte sectors at a time and decrypted in place, each sector's IV its host
 * sector number ({@code crypt_physical_offset}); compressed runs go to the compressed reader as
 * they are. Thread-safe: each call reads into its own buffer.
 */
final class EncryptedClusterReader implements ClusterDecoder {
  private static final int SECTOR = SectorCipher.SECTOR_BYTES;

  private final Storage file;
  private final SectorCipher cipher;
  private final ClusterDecoder compressed;

  EncryptedClusterReader(Storage file, SectorCipher cipher, ClusterDecoder compressed) {
    this.file = file;
    this.cipher = cipher;
    this.compressed = compressed;
  }

  @Override
  public void read(List<Part> parts) throws IOException {
    List<Part> packed = new ArrayList<>();
    for (Part p : parts) {
      if (p.run().type() == SubclusterType.COMPRESSED) {
        packed.add(p);
        continue;
      }
      long host = p.run().hostOffset() + (p.guestOffset() - p.run().guestOffset());
      long from = host & -SECTOR;
      long to = (host + p.dst().remaining() + SECTOR - 1) & -SECTOR;
      ByteBuffer sectors = ByteBuffer.allocate((int) (to - from));
      file.readFully(sectors, from);
      cipher.decrypt(sectors.flip(), from / SECTOR);
      p.dst().duplicate().put(sectors.slice((int) (host - from), p.dst().remaining()));
    }
    if (!packed.isEmpty()) {
      compressed.read(packed);
    }
  }
}
