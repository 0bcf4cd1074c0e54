package org.jqcowfs.qcow2.testing;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/** Reads and writes an image's metadata by hand (64 KiB clusters, 16-bit refcounts). */
public record Poke(Path image) {
  public long word(long offset) throws IOException {
    try (FileChannel ch = FileChannel.open(image, StandardOpenOption.READ)) {
      ByteBuffer b = ByteBuffer.allocate(8);
      ch.read(b, offset);
      return b.getLong(0);
    }
  }

  public void putWord(long offset, long value) throws IOException {
    try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
      ch.write(ByteBuffer.allocate(8).putLong(0, value), offset);
    }
  }

  public long l1(int index) throws IOException {
    return word(word(40) + 8L * index);
  }

  public void setL1(int index, long value) throws IOException {
    putWord(word(40) + 8L * index, value);
  }

  public long l2EntryOffset(long guest) throws IOException {
    long l2 = l1((int) (guest >>> 29)) & 0x00fffffffffffe00L;
    return l2 + 8 * ((guest >>> 16) & 8191);
  }

  public long dataCluster(long guest) throws IOException {
    return (word(l2EntryOffset(guest)) & 0x00fffffffffffe00L) >>> 16;
  }

  public void orL2Entry(long guest, long bits) throws IOException {
    long at = l2EntryOffset(guest);
    putWord(at, word(at) | bits);
  }

  public void setRefcount16(long cluster, int value) throws IOException {
    long block = word(word(48) + 8 * (cluster / 32768)) & ~511L;
    assertTrue(block != 0, "the refcount block of cluster " + cluster + " exists");
    try (FileChannel ch = FileChannel.open(image, StandardOpenOption.WRITE)) {
      ch.write(ByteBuffer.allocate(2).putShort(0, (short) value), block + 2 * (cluster % 32768));
    }
  }
}
