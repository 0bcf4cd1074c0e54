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

  /** The host offset of the bitmap directory (the bitmaps header extension must be there). */
  public long bitmapDirectory() throws IOException {
    try (FileChannel ch = FileChannel.open(image, StandardOpenOption.READ)) {
      ByteBuffer h = ByteBuffer.allocate(4096);
      ch.read(h, 0);
      int pos = h.getInt(100); // header_length (v3)
      while (h.getInt(pos) != 0x23852875) {
        assertTrue(h.getInt(pos) != 0, "no bitmaps extension in " + image);
        pos += 8 + ((h.getInt(pos + 4) + 7) & ~7);
      }
      return h.getLong(pos + 8 + 16);
    }
  }

  /**
   * The host offset of entry {@code index} of the bitmap directory: its table offset (8 bytes),
   * table entries (4), flags (4), type, granularity bits, name bytes (2), extra data bytes (4).
   */
  public long bitmapEntry(int index) throws IOException {
    long pos = bitmapDirectory();
    try (FileChannel ch = FileChannel.open(image, StandardOpenOption.READ)) {
      for (int i = 0; i < index; i++) {
        ByteBuffer e = ByteBuffer.allocate(24);
        ch.read(e, pos);
        pos += (24 + (e.getShort(18) & 0xffff) + e.getInt(20) + 7) & ~7;
      }
    }
    return pos;
  }

  /** Sets flag bits {@code bits} of bitmap {@code index} (1: in use, 2: auto). */
  public void orBitmapFlags(int index, int bits) throws IOException {
    long at = bitmapEntry(index) + 12;
    try (FileChannel ch =
        FileChannel.open(image, StandardOpenOption.READ, StandardOpenOption.WRITE)) {
      ByteBuffer f = ByteBuffer.allocate(4);
      ch.read(f, at);
      ch.write(ByteBuffer.allocate(4).putInt(0, f.getInt(0) | bits), at);
    }
  }
}
