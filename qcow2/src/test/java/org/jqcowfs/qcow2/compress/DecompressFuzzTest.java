package org.jqcowfs.qcow2.compress;

import com.code_intelligence.jazzer.junit.FuzzTest;
import java.nio.ByteBuffer;
import java.util.zip.DataFormatException;

/**
 * Fuzzes decompression of one 64 KiB cluster from a compressed cluster's stored bytes (spec section
 * "Compressed Clusters Descriptor"; QEMU {@code qcow2_zlib_decompress}, {@code
 * qcow2_zstd_decompress}). Only {@link DataFormatException} may come out, and the output never goes
 * past the cluster, however much the stream would expand. Seeds: deflate and zstd streams of text,
 * zeros and a stream that expands far past a cluster.
 */
class DecompressFuzzTest {
  private static final int CLUSTER = 65536;
  private static final ByteBuffer IN = ByteBuffer.allocateDirect(2 * CLUSTER + 1024);
  private static final ByteBuffer OUT = ByteBuffer.allocateDirect(CLUSTER + 4096);

  private static void run(Decompressor d, byte[] stored) {
    int n = Math.min(stored.length, IN.capacity());
    IN.clear().put(stored, 0, n).flip();
    // A canary page after the cluster: nothing may be written past the limit.
    OUT.clear();
    for (int i = CLUSTER; i < OUT.capacity(); i++) {
      OUT.put(i, (byte) 0x5a);
    }
    OUT.limit(CLUSTER);
    try {
      d.decompress(IN, OUT);
      if (OUT.hasRemaining()) {
        throw new AssertionError("success with " + OUT.remaining() + " bytes of the cluster unset");
      }
    } catch (DataFormatException expected) {
      // a bad stream: EIO for that cluster
    }
    OUT.limit(OUT.capacity());
    for (int i = CLUSTER; i < OUT.capacity(); i++) {
      if (OUT.get(i) != 0x5a) {
        throw new AssertionError("wrote past the cluster at " + i);
      }
    }
  }

  @FuzzTest(maxDuration = "20s")
  void deflate(byte[] stored) {
    run(new Decompressor.Deflate(), stored);
  }

  @FuzzTest(maxDuration = "20s")
  void zstd(byte[] stored) {
    run(new Decompressor.Zstd(), stored);
  }
}
