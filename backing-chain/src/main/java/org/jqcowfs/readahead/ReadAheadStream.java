package org.jqcowfs.readahead;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ConcurrentSkipListMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.atomic.LongAdder;
import java.util.concurrent.locks.ReentrantLock;
import org.jqcowfs.image.Image;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.Storage;

/**
 * The reads of one stream over an {@link ReadAheadImage} (one open file), with read-ahead of its
 * own once they run sequentially: while the kernel waits for one READ, the next {@link #DEPTH}
 * windows of {@link #WINDOW_BYTES} are read and decompressed here, on {@link
 * ReadAheadWindow#PREFETCH} threads. The kernel's own readahead asks for only a few READs at a time
 * (128 KiB ones on a mount without root, where its readahead cannot be raised), and O_DIRECT
 * readers get none from it.
 *
 * <p>A read is sequential when it starts where the stream has got to, or, once windows are being
 * read, up to {@link #WINDOW_BYTES} past it; one that starts before it, up to {@link #LATE_BYTES}
 * or in a window still kept, is a READ of the stream answered late and changes nothing. The
 * kernel's readahead sends several READs at once, and the FUSE workers may take them in any order.
 * ReadAheadWindows are aligned to their length; a read takes the parts it finds in completed or
 * running windows and reads the rest itself. A window is dropped once all its bytes have been
 * served, when the stream is {@link #KEEP_BYTES} past it, on a jump, or once the stream has passed
 * it and its buffer is needed for a window ahead; so a READ answered late finds its window. A
 * window whose read failed is never served: the read that needs it reads that range itself, so an
 * error is EIO for the affected request only. Random readers (fio) never start a window.
 *
 * <p>Thread-safe. Every request, on whichever worker, is served from the windows: a short lock
 * guards only which windows exist (no I/O and no waiting under it), and a request pins the window
 * it copies from, so that the window's buffer is reused only after the last copy (no range is read
 * twice; docs/performance.md).
 */
public final class ReadAheadStream implements AutoCloseable {
  /** Bytes per read-ahead window (and its alignment). */
  static final int WINDOW_BYTES = 1 << 20;

  /** ReadAheadWindows read ahead of the reader's position. */
  static final int DEPTH = 3;

  /**
   * ReadAheadWindow buffers one reader may own, in use or spare: {@link #DEPTH}, the window being
   * read, the one before it (for a READ answered late), and two whose reads or copies may still be
   * running after a jump dropped them. Bounds the direct memory of an open file to 7 MiB, also when
   * windows are dropped while their reads run.
   */
  static final int MAX_BUFFERS = DEPTH + 4;

  /**
   * How far behind the stream a READ may start and still count as one of its own answered late (it
   * changes nothing), also when its window is gone; further back, outside the windows kept, is a
   * jump.
   */
  static final long LATE_BYTES = (long) (DEPTH + 1) * WINDOW_BYTES;

  /**
   * How far behind the stream a window whose bytes have not all been served is kept, besides twice
   * the kernel's readahead ({@link ReadAheadImage#ReadAheadImage}): the kernel asks for up to twice
   * its readahead at once (cp's FADV_SEQUENTIAL doubles it), and a worker may answer one of those
   * READs after the other worker has answered all the rest (figures: docs/performance.md).
   */
  private final long keepBytes;

  private final ReadAheadImage owner;
  private final Image image;

  /** Guards which windows exist and where the stream is; never held during I/O or a wait. */
  private final ReentrantLock lock = new ReentrantLock();

  /** ReadAheadWindows by index; changed under {@link #lock}, read by requests without it. */
  private final ConcurrentSkipListMap<Long, ReadAheadWindow> windows =
      new ConcurrentSkipListMap<>();

  /**
   * Buffers of dropped windows, handed back once their reads and copies end. Lock-free: a prefetch
   * thread must never wait for {@link #lock}.
   */
  private final ConcurrentLinkedQueue<ByteBuffer> returned = new ConcurrentLinkedQueue<>();

  /** ReadAheadWindow buffers allocated, at most {@link #MAX_BUFFERS}; guarded by {@link #lock}. */
  private int buffers;

  /** Where the stream has got to: the furthest end of a sequential read; guarded by lock. */
  private long nextOffset;

  private boolean closed;

  /** Bytes served from windows. */
  private final LongAdder windowBytes = new LongAdder();

  /** Bytes of windows lent to replies (also counted in {@link #windowBytes}). */
  private final LongAdder lentBytes = new LongAdder();

  /** Bytes requests read themselves (not from a window). */
  private final LongAdder directBytes = new LongAdder();

  /** Bytes of windows that were views of the page cache ({@link CachedView}). */
  private final LongAdder mappedBytes = new LongAdder();

  ReadAheadStream(ReadAheadImage owner, Image image, long kernelReadAheadBytes) {
    this.owner = owner;
    this.image = image;
    this.keepBytes = 2 * kernelReadAheadBytes + WINDOW_BYTES;
  }

  /** The image this stream reads ahead in. */
  public ReadAheadImage image() {
    return owner;
  }

  /**
   * Reads {@code dst.remaining()} bytes at {@code offset}, fewer at the end of the image.
   *
   * @param offset guest offset in bytes, {@code >= 0}
   * @return the bytes read (0 at or past the end)
   * @throws IOException if the range cannot be read (EIO)
   */
  public int read(ByteBuffer dst, long offset) throws IOException {
    return read(dst, offset, null);
  }

  /**
   * Reads {@code dst.remaining()} bytes at {@code offset}, fewer at the end of the image. When one
   * read window holds all of them and {@code payload} is given, they are lent to it from the window
   * instead (a slice, pinned until the payload is released) and {@code dst} is left alone.
   *
   * @param offset guest offset in bytes, {@code >= 0}
   * @return the bytes read or lent (0 at or past the end)
   * @throws IllegalArgumentException if {@code offset < 0}
   * @throws IOException if the range cannot be read (EIO)
   */
  public int read(ByteBuffer dst, long offset, Borrower payload) throws IOException {
    long size = image.size();
    if (offset < 0 || offset >= size) {
      return readRange(dst, offset);
    }
    int n = (int) Math.min(dst.remaining(), size - offset);
    plan(offset, n, size);
    if (payload != null && lendAll(offset, n, payload)) {
      windowBytes.add(n);
      lentBytes.add(n);
      return n;
    }
    int pos = 0;
    while (pos < n) {
      long at = offset + pos;
      int part = partInReadAheadWindow(at, n - pos);
      ByteBuffer to = dst.slice(dst.position() + pos, part);
      if (copy(at, to)) {
        windowBytes.add(part);
      } else {
        directBytes.add(part);
        readRange(to, at);
      }
      pos += part;
    }
    dst.position(dst.position() + n);
    return n;
  }

  /**
   * Moves the stream on for a read of {@code n} bytes at {@code offset}: drops the windows it has
   * passed and, when the read is sequential, starts the windows up to {@link #DEPTH} past it.
   */
  private void plan(long offset, int n, long size) {
    lock.lock();
    try {
      long index = offset / WINDOW_BYTES;
      if (offset < nextOffset
          && (offset >= nextOffset - LATE_BYTES || windows.containsKey(index))) {
        return; // a READ answered after later ones: the stream has moved on already
      }
      boolean sequential =
          offset == nextOffset
              || (!windows.isEmpty() && offset > nextOffset && offset - nextOffset <= WINDOW_BYTES);
      if (!sequential) { // a jump: keep the windows it lands in
        nextOffset = offset + n;
        drop(Long.MIN_VALUE, index);
        drop((offset + n - 1) / WINDOW_BYTES + DEPTH + 1, Long.MAX_VALUE);
        return;
      }
      nextOffset = Math.max(nextOffset, offset + n);
      long front = (nextOffset - 1) / WINDOW_BYTES;
      drop(Long.MIN_VALUE, Math.floorDiv(nextOffset - keepBytes, WINDOW_BYTES));
      long last = Math.min(front + DEPTH, (size - 1) / WINDOW_BYTES);
      for (long i = index + 1; i <= last && !closed; i++) {
        if (!windows.containsKey(i)) {
          ByteBuffer buffer = takeBuffer();
          if (buffer == null) { // every buffer is in use: the windows passed give theirs back
            drop(Long.MIN_VALUE, Math.min(index, front - 1));
            buffer = takeBuffer();
          }
          if (buffer == null) {
            break;
          }
          windows.put(i, start(i, buffer, size));
        }
      }
    } finally {
      lock.unlock();
    }
  }

  /** Bytes served from read-ahead windows so far (for tests). */
  public long windowBytes() {
    return windowBytes.sum();
  }

  /** Bytes lent from windows so far (for tests). */
  public long lentBytes() {
    return lentBytes.sum();
  }

  /** Bytes of windows that were views of the page cache so far (for tests). */
  public long mappedBytes() {
    return mappedBytes.sum();
  }

  /** Bytes requests read themselves so far, in the file's range (for tests). */
  public long directBytes() {
    return directBytes.sum();
  }

  /**
   * Starts reading window {@code index} in the background: a view of the page cache when the image
   * stores the window raw in one cached host range ({@link CachedView}; {@code buffer} then goes
   * back at once), else read into {@code buffer}.
   */
  private ReadAheadWindow start(long index, ByteBuffer buffer, long size) {
    long from = index * WINDOW_BYTES;
    int length = (int) Math.min(WINDOW_BYTES, size - from);
    ReadAheadWindow w = new ReadAheadWindow(index, length, buffer, returned);
    ReadAheadWindow.PREFETCH.execute(
        () -> {
          try {
            CachedView v = image.cachedView(from, length);
            if (v != null) {
              w.view = v;
              returned.add(buffer);
              mappedBytes.add(length);
              w.done.complete(length);
              return;
            }
            w.done.complete(readRange(buffer.clear().limit(length), from));
          } catch (Throwable t) {
            w.done.completeExceptionally(t);
          }
        });
    return w;
  }

  /** ReadAheadWindow buffers allocated so far, at most {@link #MAX_BUFFERS} (for tests). */
  public int buffersAllocated() {
    lock.lock();
    try {
      return buffers;
    } finally {
      lock.unlock();
    }
  }

  /** A free window buffer (handed back or new), or null when all are in use. */
  private ByteBuffer takeBuffer() {
    ByteBuffer buffer = returned.poll();
    if (buffer == null && buffers < MAX_BUFFERS) {
      // aligned, so that reads of uncached data go around the page cache (Storage)
      buffer = Storage.alignedBuffer(WINDOW_BYTES);
      buffers++;
    }
    return buffer;
  }

  /**
   * Copies the window's bytes at file offset {@code at} into {@code to}, once the window is read.
   *
   * <p>A window that is a view of the page cache ({@link CachedView}) is not copied from: a Java
   * access to a mapping whose file shrank under it faults, and the JDK reports that as an
   * InternalError at some later point of the thread (in compiled code), where no catch can tie it
   * to this read. The caller's own read of the range costs the same copy, from the same cache, and
   * reports a shrunk image as an IOException.
   *
   * @return false if there is no such window, it was dropped, its read failed or was interrupted,
   *     or it is a view (the caller reads the range)
   */
  private boolean copy(long at, ByteBuffer to) {
    ReadAheadWindow w = pinned(at, to.remaining());
    if (w == null) {
      return false;
    }
    try {
      boolean view = w.view != null;
      if (!view) {
        to.put(0, w.buffer, (int) (at - w.index * WINDOW_BYTES), to.remaining());
      }
      served(w, to.remaining());
      return !view;
    } finally {
      w.unpin();
    }
  }

  /**
   * Lends the {@code n} bytes at file offset {@code offset} to {@code payload} from the windows
   * that hold them, once they are read; each window stays pinned until the payload is released.
   *
   * @return false, lending nothing, when some part is in no window that {@link #copy} could use, or
   *     the payload takes no more parts
   */
  private boolean lendAll(long offset, int n, Borrower payload) {
    for (int pos = 0; pos < n; ) {
      long at = offset + pos;
      int part = partInReadAheadWindow(at, n - pos);
      ReadAheadWindow w = pinned(at, part);
      if (w == null) {
        payload.release();
        return false;
      }
      if (!payload.lend(w.bytes().slice((int) (at - w.index * WINDOW_BYTES), part), w::unpin)) {
        w.unpin();
        payload.release();
        return false;
      }
      served(w, part);
      pos += part;
    }
    return true;
  }

  /**
   * Bytes of {@code left} from file offset {@code at} that lie in the window holding {@code at}.
   */
  private static int partInReadAheadWindow(long at, int left) {
    return (int) Math.min(left, (at / WINDOW_BYTES + 1) * WINDOW_BYTES - at);
  }

  /**
   * The window holding the {@code n} bytes at file offset {@code at} (all in one window), pinned,
   * once its read has succeeded; the caller unpins it.
   *
   * @return null if there is no such window, it was dropped, or its read failed, was interrupted or
   *     came up short of those bytes
   */
  private ReadAheadWindow pinned(long at, int n) {
    ReadAheadWindow w = windows.get(at / WINDOW_BYTES);
    if (w == null || !w.pin()) {
      return null;
    }
    boolean holds;
    try {
      holds = at - w.index * WINDOW_BYTES + n <= w.done.get();
    } catch (ExecutionException e) {
      holds = false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      holds = false;
    }
    if (!holds) {
      w.unpin();
      return null;
    }
    return w;
  }

  /**
   * Counts {@code n} bytes served from window {@code w} (pinned by the caller, so its buffer stays
   * until the copy or loan ends) and drops it once all its bytes have been. A loan given back
   * because a later part of its READ could not be lent stays counted, and the READ's copy counts it
   * again: the window then goes early (its bytes are read again if asked for), never late.
   */
  private void served(ReadAheadWindow w, int n) {
    if (w.serve(n)) {
      drop(w);
    }
  }

  /** Drops the windows with indexes in [from, to); their buffers are reused once unused. */
  private void drop(long from, long to) {
    if (from < to) {
      for (ReadAheadWindow w : windows.subMap(from, to).values()) {
        drop(w);
      }
    }
  }

  /** Takes {@code w} out of {@link #windows} and drops it, unless another thread already has. */
  private void drop(ReadAheadWindow w) {
    if (windows.remove(w.index, w)) {
      w.drop();
    }
  }

  /**
   * Reads the bytes at {@code offset} from the image itself, fewer at its end (read-ahead and
   * requests no window holds).
   */
  private int readRange(ByteBuffer dst, long offset) throws IOException {
    if (offset < 0) {
      throw new IllegalArgumentException("negative offset " + offset);
    }
    long size = image.size();
    if (offset >= size) {
      return 0;
    }
    int n = (int) Math.min(dst.remaining(), size - offset);
    image.read(dst.slice(dst.position(), n), offset);
    dst.position(dst.position() + n);
    return n;
  }

  /**
   * Drops the windows that overlap {@code [offset, offset + length)} (bytes), read or being read:
   * no request that starts after this returns is served from them.
   */
  void invalidate(long offset, long length) {
    if (length <= 0) {
      return;
    }
    lock.lock();
    try {
      drop(offset / WINDOW_BYTES, (offset + length - 1) / WINDOW_BYTES + 1);
    } finally {
      lock.unlock();
    }
  }

  /** Stops reading ahead (FUSE_RELEASE); running window reads and copies finish on their own. */
  @Override
  public void close() {
    lock.lock();
    try {
      closed = true;
      drop(Long.MIN_VALUE, Long.MAX_VALUE);
    } finally {
      lock.unlock();
    }
    owner.closed(this);
  }
}
