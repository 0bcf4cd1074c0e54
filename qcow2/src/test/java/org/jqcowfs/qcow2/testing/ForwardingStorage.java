package org.jqcowfs.qcow2.testing;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/**
 * A local file with every capability, each call passed to it: the base of the test storages that
 * watch what the image code does (recording writes and flushes for crash states, observing reads
 * for the hostile corpus), overriding only what they watch.
 */
public class ForwardingStorage
    implements Storage,
        Storage.CachedViews,
        Storage.BatchedReads,
        Storage.Holes,
        Storage.Allocation {
  /** The file every call goes to. */
  protected final PosixStorage file;

  public ForwardingStorage(PosixStorage file) {
    this.file = file;
  }

  @Override
  public Location location() {
    return file.location();
  }

  @Override
  public long length() throws IOException {
    return file.length();
  }

  @Override
  public void readFully(ByteBuffer dst, long position) throws IOException {
    file.readFully(dst, position);
  }

  @Override
  public int readUpTo(ByteBuffer dst, long position) throws IOException {
    return file.readUpTo(dst, position);
  }

  @Override
  public boolean[] readRanges(ByteBuffer[] dsts, long[] positions) throws IOException {
    return file.readRanges(dsts, positions);
  }

  @Override
  public CachedView mapCached(long position, int length) throws IOException {
    return file.mapCached(position, length);
  }

  @Override
  public long seekData(long offset) throws IOException {
    return file.seekData(offset);
  }

  @Override
  public long seekHole(long offset) throws IOException {
    return file.seekHole(offset);
  }

  @Override
  public long allocatedBytes() throws IOException {
    return file.allocatedBytes();
  }

  @Override
  public void allocate(long position, long length) throws IOException {
    file.allocate(position, length);
  }

  @Override
  public void reserve(long position, long length) throws IOException {
    file.reserve(position, length);
  }

  @Override
  public void write(ByteBuffer src, long position) throws IOException {
    file.write(src, position);
  }

  @Override
  public void flush() throws IOException {
    file.flush();
  }

  @Override
  public void punchHole(long position, long length) throws IOException {
    file.punchHole(position, length);
  }

  @Override
  public void setLength(long bytes) throws IOException {
    file.setLength(bytes);
  }

  @Override
  public void close() throws IOException {
    file.close();
  }
}
