package org.jqcowfs.chain;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.jqcowfs.storage.StorageOpener;

/**
 * A local file that tells {@code outside} of every read that was answered although it reaches past
 * the end of the file (a read the storage should have refused): the hostile-image corpus's check
 * that no crafted pointer reads what is not there. Every capability of the file is kept, so the
 * batched and mapped read paths are observed too.
 */
final class ObservedStorage
    implements Storage,
        Storage.CachedViews,
        Storage.BatchedReads,
        Storage.Holes,
        Storage.Allocation {
  private final PosixStorage file;
  private final List<String> outside;

  private ObservedStorage(PosixStorage file, List<String> outside) {
    this.file = file;
    this.outside = outside;
  }

  /** Opens local files as {@link PosixOpener#DEFAULT}, each observed into {@code outside}. */
  static StorageOpener opener(List<String> outside) {
    return new StorageOpener() {
      @Override
      public Storage open(Location location, boolean writable) throws IOException {
        return new ObservedStorage(
            (PosixStorage) PosixOpener.DEFAULT.open(location, writable), outside);
      }

      @Override
      public Closeable lock(Location location, boolean writer) throws IOException {
        return PosixOpener.DEFAULT.lock(location, writer);
      }
    };
  }

  private void answered(long position, long bytes) throws IOException {
    long length = file.length();
    if (position < 0 || bytes < 0 || position + bytes > length) {
      outside.add(file.location() + ": " + bytes + " bytes at " + position + ", file " + length);
    }
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
    int bytes = dst.remaining();
    file.readFully(dst, position);
    answered(position, bytes);
  }

  @Override
  public int readUpTo(ByteBuffer dst, long position) throws IOException {
    int n = file.readUpTo(dst, position);
    answered(position, n);
    return n;
  }

  @Override
  public boolean[] readRanges(ByteBuffer[] dsts, long[] positions) throws IOException {
    int[] bytes = new int[dsts.length];
    for (int i = 0; i < dsts.length; i++) {
      bytes[i] = dsts[i].remaining();
    }
    boolean[] done = file.readRanges(dsts, positions);
    for (int i = 0; i < dsts.length; i++) {
      if (done[i]) {
        answered(positions[i], bytes[i]);
      }
    }
    return done;
  }

  @Override
  public CachedView mapCached(long position, int length) throws IOException {
    CachedView view = file.mapCached(position, length);
    if (view != null) {
      answered(position, length);
    }
    return view;
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
