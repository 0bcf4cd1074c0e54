package org.jqcowfs.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.testing.ForwardingStorage;

/**
 * A storage that records every write and every flush (sync) made through it, in order, as
 * dm-log-writes records a block device: the log from which crash states are rebuilt. The written
 * bytes go to a log file beside it, as dm-log-writes keeps them on a log device.
 */
final class RecordingStorage extends ForwardingStorage {
  /**
   * One write: its host offset, its length in bytes and where its bytes are in the log file; or,
   * with {@code length} -1, a completed flush.
   */
  record Entry(long position, int length, long logOffset) {
    boolean isFlush() {
      return length == -1;
    }

    /** A growth of the file to {@code position} bytes ({@link #setLength}, {@link #reserve}). */
    boolean isGrowth() {
      return length == -2;
    }

    /** A cut of the file to {@code position} bytes ({@link #setLength}). */
    boolean isCut() {
      return length == -3;
    }
  }

  private final FileChannel bytes;
  private final List<Entry> log = new ArrayList<>();
  private long logEnd;

  RecordingStorage(PosixStorage delegate, Path logFile) throws IOException {
    super(delegate);
    this.bytes =
        FileChannel.open(
            logFile,
            StandardOpenOption.CREATE,
            StandardOpenOption.READ,
            StandardOpenOption.WRITE,
            StandardOpenOption.TRUNCATE_EXISTING);
  }

  /** Reads the bytes of write {@code e} into {@code dst} (its remaining bytes, from the start). */
  void readBytes(Entry e, int from, ByteBuffer dst) throws IOException {
    while (dst.hasRemaining()) {
      if (bytes.read(dst, e.logOffset() + from + dst.position()) < 0) {
        throw new IOException("log ends early");
      }
    }
  }

  /** The writes and flushes so far. */
  synchronized List<Entry> log() {
    return List.copyOf(log);
  }

  /** The number of completed flushes so far. */
  synchronized int flushes() {
    return (int) log.stream().filter(Entry::isFlush).count();
  }

  @Override
  public void write(ByteBuffer src, long position) throws IOException {
    ByteBuffer copy = src.duplicate();
    int length = copy.remaining();
    file.write(src, position);
    synchronized (this) {
      long at = logEnd;
      while (copy.hasRemaining()) {
        bytes.write(copy, at + length - copy.remaining());
      }
      logEnd += length;
      log.add(new Entry(position, length, at));
    }
  }

  @Override
  public void flush() throws IOException {
    file.flush();
    synchronized (this) {
      log.add(new Entry(-1, -1, -1));
    }
  }

  @Override
  public void setLength(long bytes) throws IOException {
    boolean cut = bytes < file.length();
    file.setLength(bytes);
    synchronized (this) {
      log.add(new Entry(bytes, cut ? -3 : -2, -1));
    }
  }

  @Override
  public void allocate(long position, long length) throws IOException {
    throw new UnsupportedOperationException("not recorded: allocate");
  }

  @Override
  public void reserve(long position, long length) throws IOException {
    long end = Math.max(file.length(), position + length);
    file.reserve(position, length);
    synchronized (this) {
      log.add(new Entry(end, -2, -1)); // the length it may grow to; the bytes read as before
    }
  }

  /** Recorded as a write of zeros: what the range reads as after it, torn like any write. */
  @Override
  public void punchHole(long position, long length) throws IOException {
    file.punchHole(position, length);
    synchronized (this) {
      long at = logEnd;
      ByteBuffer zeros = ByteBuffer.allocate((int) Math.min(length, 1 << 20));
      for (long done = 0; done < length; ) {
        int n = (int) Math.min(zeros.capacity(), length - done);
        zeros.clear().limit(n);
        while (zeros.hasRemaining()) {
          bytes.write(zeros, at + done + zeros.position());
        }
        done += n;
      }
      logEnd += length;
      log.add(new Entry(position, (int) length, at));
    }
  }

  /** Closes the log file. */
  void closeLog() throws IOException {
    bytes.close();
  }
}
