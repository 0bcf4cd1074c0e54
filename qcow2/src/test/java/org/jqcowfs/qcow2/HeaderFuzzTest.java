package org.jqcowfs.qcow2;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.storage.Storage;

/**
 * Fuzzes the header and header-extension parser ({@link Header#decode}, spec sections 1 and 2) with
 * whole first clusters. Only {@link IOException} (a refusal naming field and value) may come out:
 * any other exception, an allocation failure or a hang is a finding. Seeds: first clusters of
 * images made by qemu-img (v2, v3, extended L2, zstd, external data file, backing file, snapshots).
 */
class HeaderFuzzTest {
  private static final Path FILE = FuzzFiles.scratch("header");

  @FuzzTest(maxDuration = "20s")
  void header(byte[] firstCluster) throws IOException {
    Files.write(FILE, firstCluster);
    try (Storage f = PosixStorage.open(FILE, HostFileOptions.DEFAULT)) {
      Header h = MetadataIo.readHeader(f);
      h.geometry();
      roundTrip(h, f.length());
    } catch (IOException expected) {
      // refused: fine
    }
  }

  /** A header that decodes encodes to bytes that decode to it again. */
  private static void roundTrip(Header h, long fileLength) throws IOException {
    ByteBuffer encoded;
    try {
      encoded = h.encode();
    } catch (IllegalStateException notEncodable) {
      return; // a bitmaps extension, or names that grow past their limits when re-encoded
    }
    // The encoding may be longer than a short file (a feature name table QEMU would write): the
    // file the encoding is decoded from is then that long.
    long length = Math.max(fileLength, encoded.remaining());
    ByteBuffer first = ByteBuffer.allocate((int) Math.min(h.clusterSize(), length));
    first.put(encoded).clear();
    Header again = Header.decode(org.jqcowfs.storage.FileLocation.of(FILE), first, length);
    if (!again.equals(h)) {
      throw new AssertionError("round trip changed the header: " + h + " -> " + again);
    }
  }
}
