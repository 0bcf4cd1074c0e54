package org.jqcowfs.qcow2;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.jqcowfs.image.Extent;
import org.jqcowfs.qcow2.testing.Qemu;

/**
 * Fuzzes the L2-entry and extent mapping ({@code Qcow2Image.mapRun}, QEMU {@code
 * qcow2_get_host_offset}) and everything a read does with what it finds: the first byte picks a
 * valid header made by qemu-img (4 KiB clusters, or 16 KiB clusters with extended L2 entries and
 * zstd), the rest replaces every cluster after the header (refcounts, L1 and L2 tables, data,
 * compressed clusters). Block status is walked over the whole disk and every 64 KiB is read. Only
 * {@link IOException} may come out; each block-status answer must lie inside the range asked for.
 * Seeds: the bodies of images made by qemu-img and qemu-io.
 */
class MappingFuzzTest {
  private static final Path FILE = FuzzFiles.scratch("image.qcow2");
  private static final byte[][] HEADERS = {
    header(4096, ""), header(16384, ",extended_l2=on,compression_type=zstd")
  };

  /** The first cluster of an empty 4 MiB image made by qemu-img. */
  private static byte[] header(int clusterBytes, String opts) {
    try {
      Path dir = Files.createTempDirectory("jqcowfs-fuzz-header");
      Qemu.img(
          dir,
          "create",
          "-q",
          "-f",
          "qcow2",
          "-o",
          "cluster_size=" + clusterBytes + opts,
          "t.qcow2",
          "4M");
      byte[] all = Files.readAllBytes(dir.resolve("t.qcow2"));
      Files.delete(dir.resolve("t.qcow2"));
      Files.delete(dir);
      return Arrays.copyOf(all, clusterBytes);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  @FuzzTest(maxDuration = "20s")
  void mapAndRead(byte[] input) throws IOException {
    if (input.length < 1) {
      return;
    }
    byte[] header = HEADERS[(input[0] & 0xff) % HEADERS.length];
    byte[] image = Arrays.copyOf(header, header.length + input.length - 1);
    System.arraycopy(input, 1, image, header.length, input.length - 1);
    Files.write(FILE, image);
    try (Qcow2Image img = Qcow2Image.open(FILE)) {
      long size = img.size();
      for (long pos = 0; pos < size; ) {
        Extent e;
        try {
          e = img.blockStatus(pos, size - pos);
        } catch (IOException bad) {
          pos += 65536 - pos % 65536; // EIO for this range; go on after it
          continue;
        }
        if (e.start() != pos || e.length() <= 0 || e.end() > size) {
          throw new AssertionError("block status at " + pos + " answered " + e);
        }
        pos = e.end();
      }
      ByteBuffer buf = ByteBuffer.allocate(65536);
      for (long pos = 0; pos < size; pos += 65536) {
        try {
          img.read(buf.clear().limit((int) Math.min(65536, size - pos)), pos);
        } catch (IOException bad) {
          // EIO for this range
        }
      }
    } catch (IOException refused) {
      // refused at open
    }
  }
}
