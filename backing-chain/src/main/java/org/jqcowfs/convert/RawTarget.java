package org.jqcowfs.convert;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;

/**
 * A raw file as a {@link Converter}'s target ({@code qemu-img convert -O raw}): the non-zero 4 KiB
 * blocks are written, the rest stay holes ({@code -S 4k}).
 */
final class RawTarget implements ConvertTarget {
  private final FileChannel out;

  RawTarget(FileChannel out) {
    this.out = out;
  }

  @Override
  public int zeroBlock() {
    return Converter.ZERO_BLOCK;
  }

  @Override
  public int alignment() {
    return 1;
  }

  @Override
  public long backingBytes() {
    return -1;
  }

  @Override
  public boolean serialWrites() {
    return true;
  }

  @Override
  public void writeData(ByteBuffer chunk, long guestOffset, int[] runs, int count)
      throws IOException {
    Converter.writeRuns(out, chunk, guestOffset, runs, count);
  }

  @Override
  public void writeZeroes(long guestOffset, long bytes) {
    throw new UnsupportedOperationException("a raw target has no backing file");
  }
}
