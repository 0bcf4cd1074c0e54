package org.jqcowfs.readahead;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.junit.jupiter.api.Test;

/**
 * {@link ReadAheadImage#invalidate}: a window read before a write is not served after the write's
 * invalidation, while a window nobody invalidated still is (so the check can fail).
 */
class ReadAheadInvalidateTest {
  private static final int MIB = 1 << 20;

  /** An image in memory whose bytes a test changes, as a writer would. */
  static final class MemoryImage implements Image {
    final byte[] bytes = new byte[8 * MIB];

    @Override
    public long size() {
      return bytes.length;
    }

    @Override
    public org.jqcowfs.storage.Location location() {
      return org.jqcowfs.storage.FileLocation.of(Path.of("memory"));
    }

    @Override
    public long hostBytes() {
      return bytes.length;
    }

    @Override
    public synchronized void read(ByteBuffer dst, long guestOffset) {
      Image.checkRange(guestOffset, dst.remaining(), size());
      dst.put(bytes, (int) guestOffset, dst.remaining());
    }

    @Override
    public Extent blockStatus(long guestOffset, long maxLength) {
      Image.checkRange(guestOffset, 1, size());
      long n = Math.min(maxLength, size() - guestOffset);
      return new Extent(guestOffset, n, true, true, false, false, -1, null);
    }

    synchronized void set(int offset, byte value) {
      bytes[offset] = value;
    }

    @Override
    public void close() {}
  }

  private static byte byteAt(ReadAheadStream s, long offset) throws IOException {
    ByteBuffer b = ByteBuffer.allocate(4096);
    assertEquals(4096, s.read(b, offset));
    return b.get(0);
  }

  @Test
  void aWriteInvalidatesTheWindowsThatHoldItsRange() throws IOException {
    MemoryImage memory = new MemoryImage();
    try (ReadAheadImage image = new ReadAheadImage(memory, 8L * MIB);
        ReadAheadStream s = image.openStream()) {
      s.read(ByteBuffer.allocate(MIB), 0); // sequential from 0: windows 1-3 are read ahead
      byteAt(s, MIB);
      byteAt(s, 2L * MIB); // each read waits for its window, so windows 2 and 3 are read now
      byteAt(s, 3L * MIB);
      long fromWindows = s.windowBytes();
      assertTrue(fromWindows >= 3 * 4096, "served from windows: " + fromWindows);

      memory.set(2 * MIB + 8192, (byte) 7); // a write to window 2, invalidated
      image.invalidate(2L * MIB + 8192, 1);
      memory.set(3 * MIB + 8192, (byte) 9); // and one to window 3, not invalidated

      assertEquals(7, byteAt(s, 2L * MIB + 8192), "the invalidated window is not served");
      assertEquals(0, byteAt(s, 3L * MIB + 8192), "a window not invalidated keeps what it read");
    }
  }
}
