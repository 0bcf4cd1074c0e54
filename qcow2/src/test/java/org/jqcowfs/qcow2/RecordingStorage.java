package org.jqcowfs.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/**
 * A storage that records every write and every flush (sync) made through it, in order, as
 * dm-log-writes records a block device: the log from which crash states are rebuilt. The written
 * bytes go to a log file beside it, as dm-log-writes keeps them on a log device.
 */
final class RecordingStorage
    implements Storage,
        Storage.CachedViews,
        Storage.BatchedReads,
        Storage.Holes,
        Storage.Allocation {
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
  }

  private final PosixStorage delegate;
  private final FileChannel bytes;
  private final List<Entry> log = new ArrayList<>();
  private long logEnd;

  RecordingStorage(PosixStorage delegate, Path logFile) throws IOException {
    this.delegate = delegate;
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
    delegate.write(src, position);
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
    delegate.flush();
    synchronized (this) {
      log.add(new Entry(-1, -1, -1));
    }
  }

  @Override
  public Location location() {
    return delegate.location();
  }

  @Override
  public long length() throws IOException {
    return delegate.length();
  }

  @Override
  public void readFully(ByteBuffer dst, long position) throws IOException {
    delegate.readFully(dst, position);
  }

  @Override
  public int readUpTo(ByteBuffer dst, long position) throws IOException {
    return delegate.readUpTo(dst, position);
  }

  @Override
  public boolean[] readRanges(ByteBuffer[] dsts, long[] positions) throws IOException {
    return delegate.readRanges(dsts, positions);
  }

  @Override
  public CachedView mapCached(long position, int length) throws IOException {
    return delegate.mapCached(position, length);
  }

  @Override
  public long seekData(long offset) throws IOException {
    return delegate.seekData(offset);
  }

  @Override
  public long seekHole(long offset) throws IOException {
    return delegate.seekHole(offset);
  }

  @Override
  public long allocatedBytes() throws IOException {
    return delegate.allocatedBytes();
  }

  @Override
  public void setLength(long bytes) throws IOException {
    if (bytes < delegate.length()) {
      throw new UnsupportedOperationException("not recorded: shrinking");
    }
    delegate.setLength(bytes);
    synchronized (this) {
      log.add(new Entry(bytes, -2, -1));
    }
  }

  @Override
  public void allocate(long position, long length) throws IOException {
    throw new UnsupportedOperationException("not recorded: allocate");
  }

  @Override
  public void reserve(long position, long length) throws IOException {
    long end = Math.max(delegate.length(), position + length);
    delegate.reserve(position, length);
    synchronized (this) {
      log.add(new Entry(end, -2, -1)); // the length it may grow to; the bytes read as before
    }
  }

  @Override
  public void punchHole(long position, long length) throws IOException {
    throw new UnsupportedOperationException("not recorded: punchHole");
  }

  @Override
  public void close() throws IOException {
    delegate.close();
  }

  /** Closes the log file. */
  void closeLog() throws IOException {
    bytes.close();
  }
}
