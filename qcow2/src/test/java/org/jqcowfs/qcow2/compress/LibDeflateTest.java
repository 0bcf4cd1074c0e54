package org.jqcowfs.qcow2.compress;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;
import java.util.stream.Stream;
import java.util.zip.Deflater;
import org.junit.jupiter.api.Test;

/** {@link LibDeflate}'s native call through jffi inflates what Java's Deflater compressed. */
class LibDeflateTest {
  @Test
  void libdeflateIsUsedWhenInstalledAndInflatesWhatJavaDeflated() throws IOException {
    boolean installed;
    try (Stream<Path> libs = Files.list(Path.of("/usr/lib"))) {
      installed = libs.anyMatch(d -> Files.exists(d.resolve("libdeflate.so.0")));
    }
    assumeTrue(installed, "Debian's libdeflate0 is not installed");
    assertTrue(LibDeflate.available());
    byte[] data = new byte[65536];
    Random random = new Random(7);
    for (int i = 0; i < data.length; i++) {
      data[i] = (byte) random.nextInt(4); // compressible
    }
    Deflater deflater = new Deflater(Deflater.DEFAULT_COMPRESSION, true);
    deflater.setInput(data);
    deflater.finish();
    ByteBuffer src = ByteBuffer.allocateDirect(2 * data.length);
    deflater.deflate(src);
    src.flip();
    ByteBuffer dst = ByteBuffer.allocateDirect(data.length);
    assertEquals(data.length, LibDeflate.decompress(src, dst));
    byte[] got = new byte[data.length];
    dst.get(got);
    assertArrayEquals(data, got);
    // a stream cut short is an error, not a short answer
    assertEquals(-1, LibDeflate.decompress(src.limit(src.limit() / 2), dst.clear()));
  }
}
