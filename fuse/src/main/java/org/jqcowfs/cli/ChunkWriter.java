package org.jqcowfs.cli;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.locks.ReentrantLock;

/**
 * Writes the converted chunks to the raw file in whatever order they are ready, one thread at a
 * time, without making a worker wait for another's write. The kernel serializes buffered writes to
 * one file anyway (the inode lock, {@code i_rwsem}), so a worker that finds another writing leaves
 * its chunk in a queue that the writing thread drains before it lets go, and goes back to reading
 * and decompressing (flat combining). With a plain lock, the workers of a zstd conversion on 2
 * cores slept on it: it was held for 1.7 s of a 2.5 s run.
 *
 * <p>Thread-safe. A failed write is reported to the thread that wrote, and every later chunk is
 * released without being written.
 */
final class ChunkWriter {
  /**
   * A chunk ready to be written: the non-zero runs of {@code buffer}, each {@code runs[2i]} to
   * {@code runs[2i + 1]} (byte positions in the buffer), at file offset {@code offset} + position.
   *
   * @param release called once the chunk is written or dropped (returns the buffer to its pool)
   */
  record Chunk(ByteBuffer buffer, long offset, int[] runs, int runCount, Runnable release) {}

  private final FileChannel channel;
  private final ConcurrentLinkedQueue<Chunk> ready = new ConcurrentLinkedQueue<>();
  private final ReentrantLock writing = new ReentrantLock();
  private volatile IOException failure;

  ChunkWriter(FileChannel channel) {
    this.channel = channel;
  }

  /**
   * Writes {@code chunk} now, or leaves it to the thread writing at the moment.
   *
   * @throws IOException if a write this thread did failed (the chunks queued after it are released
   *     unwritten, and the failure stays for {@link #failure})
   */
  void submit(Chunk chunk) throws IOException {
    ready.add(chunk);
    IOException mine = null;
    // A chunk queued while the writer was draining is seen by the writer's check after unlock.
    while (!ready.isEmpty() && writing.tryLock()) {
      try {
        for (Chunk c; (c = ready.poll()) != null; ) {
          try {
            if (failure == null) {
              write(c);
            }
          } catch (IOException | RuntimeException e) {
            IOException io = e instanceof IOException x ? x : new IOException(e);
            failure = io;
            mine = mine != null ? mine : io;
          } finally {
            c.release.run();
          }
        }
      } finally {
        writing.unlock();
      }
    }
    if (mine != null) {
      throw mine;
    }
  }

  /** The first write failure, or null. */
  IOException failure() {
    return failure;
  }

  private void write(Chunk c) throws IOException {
    for (int i = 0; i < c.runCount; i++) {
      int from = c.runs[2 * i];
      ByteBuffer src = c.buffer.slice(from, c.runs[2 * i + 1] - from);
      long pos = c.offset + from;
      while (src.hasRemaining()) {
        pos += channel.write(src, pos);
      }
    }
  }
}
