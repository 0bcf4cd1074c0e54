package org.jqcowfs.readahead;

import java.nio.ByteBuffer;
import java.util.Queue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import org.jqcowfs.storage.CachedView;

/**
 * One read-ahead window of a {@link ReadAheadStream}: bytes [index x {@link
 * ReadAheadStream#WINDOW_BYTES}, + length) of the file once {@code done}, in {@link #bytes()}. Its
 * buffer goes back to {@link #returned} when it has been dropped, its read has ended and no request
 * copies from it any more; a window whose bytes are a view of the page cache gives its buffer back
 * at once and closes the view then instead.
 */
final class ReadAheadWindow {
  /** Set in {@link #pins} once the window is dropped: no new pins. */
  private static final int DROPPED = 1 << 30;

  /** Threads reading windows, shared by every open file (their reads fan out further inside). */
  static final int PREFETCH_THREADS = Math.max(2, Runtime.getRuntime().availableProcessors());

  /** The pool that reads windows in the background. */
  static final ExecutorService PREFETCH = prefetchPool();

  private static ExecutorService prefetchPool() {
    AtomicInteger n = new AtomicInteger();
    return Executors.newFixedThreadPool(
        PREFETCH_THREADS,
        r -> {
          Thread t = new Thread(r, "jqcowfs-readahead-" + n.incrementAndGet());
          t.setDaemon(true);
          return t;
        });
  }

  /** Where the window's buffer goes back to, once unused. */
  private final Queue<ByteBuffer> returned;

  final long index;

  /**
   * The window's bytes in the file: {@link ReadAheadStream#WINDOW_BYTES}, less at the end of the
   * file.
   */
  final int length;

  /** Bytes served from the window so far; at {@link #length} it is dropped. */
  private final AtomicInteger served = new AtomicInteger();

  /** The window's own buffer; not used once {@link #view} is set. */
  final ByteBuffer buffer;

  /**
   * The page cache's bytes, mapped ({@link CachedView}), when the image stores the window raw in
   * one cached host range; set before {@link #done} completes, so any thread that has seen {@code
   * done} sees it.
   */
  volatile CachedView view;

  final CompletableFuture<Integer> done = new CompletableFuture<>();

  /** Requests copying from or lending the buffer, plus {@link #DROPPED} once dropped. */
  private final AtomicInteger pins = new AtomicInteger();

  ReadAheadWindow(long index, int length, ByteBuffer buffer, Queue<ByteBuffer> returned) {
    this.index = index;
    this.length = length;
    this.buffer = buffer;
    this.returned = returned;
  }

  /** Pins the buffer for a copy or a loan; false once dropped. */
  boolean pin() {
    for (int p; ((p = pins.get()) & DROPPED) == 0; ) {
      if (pins.compareAndSet(p, p + 1)) {
        return true;
      }
    }
    return false;
  }

  void unpin() {
    if (pins.decrementAndGet() == DROPPED) {
      recycle();
    }
  }

  /** Counts {@code n} bytes served; true once all of the window's bytes have been. */
  boolean serve(int n) {
    return served.addAndGet(n) >= length;
  }

  /** Called once, by the thread that removed the window from the stream's windows. */
  void drop() {
    if (pins.getAndAdd(DROPPED) == 0) {
      recycle();
    }
  }

  private void recycle() {
    done.whenComplete(
        (length, failure) -> {
          CachedView v = view;
          if (v != null) {
            v.close();
          } else {
            returned.add(buffer);
          }
        });
  }

  /** The window's bytes, once {@link #done}: the view's, or the buffer's. */
  ByteBuffer bytes() {
    CachedView v = view;
    return v != null ? v.bytes() : buffer;
  }
}
