package org.jqcowfs.chain;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.testing.ForwardingStorage;
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
final class ObservedStorage extends ForwardingStorage {
  private final List<String> outside;

  private ObservedStorage(PosixStorage file, List<String> outside) {
    super(file);
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
}
