package org.jqcowfs.systemtests;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;

/** Positional writes that finish: {@link FileChannel#write(ByteBuffer, long)} may write less. */
final class ChannelWrites {
  private ChannelWrites() {}

  /** Writes all of {@code data} to {@code ch} at byte {@code offset}. */
  static void writeAt(FileChannel ch, byte[] data, long offset) throws IOException {
    ByteBuffer b = ByteBuffer.wrap(data);
    while (b.hasRemaining()) {
      ch.write(b, offset + b.position());
    }
  }
}
