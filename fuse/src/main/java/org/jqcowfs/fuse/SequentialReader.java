package org.jqcowfs.fuse;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.Iterator;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.ReentrantLock;
import org.jqcowfs.fuse.FlatFileSystem.FlatFile;

/**
 * The reads of one open flat file, with read-ahead of its own once they run sequentially: while the
 * kernel waits for one READ, the next {@link #DEPTH} windows of {@link #WINDOW_BYTES} are read and
 * decompressed here, on {@link #PREFETCH} threads. The kernel's own readahead asks for only a few
 * READs at a time (128 KiB ones on a mount without root, where its readahead cannot be raised), and
 * O_DIRECT readers get none from it.
 *
 * <p>A read is sequential when it starts where the previous one ended. Windows are aligned to their
 * length; a read takes the parts it finds in completed or running windows and reads the rest
 * itself. A window whose read failed is never served: the read that needs it reads that range
 * itself, so an error is EIO for the affected request only. Random readers (fio) never start a
 * window and pay one {@code tryLock}.
 *
 * <p>Thread-safe. Requests on one open file normally come one at a time (one reader); a request
 * that finds another in progress reads directly, so no request waits on another's lock.
 */
final class SequentialReader implements AutoCloseable {
  /** Bytes per read-ahead window (and its alignment). */
  static final int WINDOW_BYTES = 1 << 20;

  /** Windows read ahead of the reader's position. */
  static final int DEPTH = 3;

  /**
   * Window buffers one reader may own, in use or spare: {@link #DEPTH}, plus two whose reads may
   * still be running after a jump dropped them. Bounds the direct memory of an open file to 5 MiB;
   * without the bound, windows dropped while their reads ran (READs answered out of order by
   * parallel workers) left their buffers to the garbage collector, and the daemon grew by 90 MiB
   * over one cp.
   */
  static final int MAX_BUFFERS = DEPTH + 2;

  /** Threads reading windows, shared by every open file (their reads fan out further inside). */
  static final int PREFETCH_THREADS = Math.max(2, Runtime.getRuntime().availableProcessors());

  private static final ExecutorService PREFETCH = prefetchPool();

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

  /** One window: bytes [index x WINDOW_BYTES, + length) of the file once {@code done}. */
  private record Window(long index, ByteBuffer buffer, CompletableFuture<Integer> done) {}

  private final FlatFile file;
  private final ReentrantLock lock = new ReentrantLock();

  /** Windows in ascending index order; guarded by {@link #lock}. */
  private final ArrayDeque<Window> windows = new ArrayDeque<>();

  /** Buffers of finished, dropped windows, for reuse; guarded by {@link #lock}. */
  private final ArrayDeque<ByteBuffer> spare = new ArrayDeque<>();

  /**
   * Buffers of windows dropped while their reads ran, handed back by the prefetch thread when the
   * read ends. Lock-free: a prefetch thread must never wait for {@link #lock}, whose holder may be
   * waiting for a window that same thread has yet to read.
   */
  private final ConcurrentLinkedQueue<ByteBuffer> returned = new ConcurrentLinkedQueue<>();

  /** Window buffers allocated, at most {@link #MAX_BUFFERS}; guarded by {@link #lock}. */
  private int buffers;

  private long nextOffset;
  private boolean closed;

  /** Bytes served from windows; guarded by {@link #lock}. */
  private long windowBytes;

  SequentialReader(FlatFile file) {
    this.file = file;
  }

  /** The file read. */
  FlatFile file() {
    return file;
  }

  /**
   * Reads {@code dst.remaining()} bytes at {@code offset}, fewer at the end of the file.
   *
   * @return the bytes read (0 at or past the end)
   * @throws IOException if the range cannot be read (EIO)
   */
  int read(ByteBuffer dst, long offset) throws IOException {
    long size = file.size();
    if (offset < 0 || offset >= size || !lock.tryLock()) {
      return FlatFileSystem.readRange(file, dst, offset);
    }
    int n = (int) Math.min(dst.remaining(), size - offset);
    try {
      boolean sequential = offset == nextOffset;
      nextOffset = offset + n;
      drop(offset / WINDOW_BYTES);
      if (sequential && !closed) {
        long last = Math.min((offset + n - 1) / WINDOW_BYTES + DEPTH, (size - 1) / WINDOW_BYTES);
        long from = windows.isEmpty() ? offset / WINDOW_BYTES + 1 : windows.peekLast().index + 1;
        for (long i = from; i <= last; i++) {
          Window w = start(i, size);
          if (w == null) {
            break; // every buffer is in use
          }
          windows.addLast(w);
        }
      }
      int pos = 0;
      while (pos < n) {
        long at = offset + pos;
        long index = at / WINDOW_BYTES;
        int part = (int) Math.min(n - pos, (index + 1) * WINDOW_BYTES - at);
        ByteBuffer to = dst.slice(dst.position() + pos, part);
        Window w = find(index);
        if (w != null && copy(w, at, to)) {
          windowBytes += part;
        } else {
          FlatFileSystem.readRange(file, to, at);
        }
        pos += part;
      }
      dst.position(dst.position() + n);
      return n;
    } finally {
      lock.unlock();
    }
  }

  /** Bytes served from read-ahead windows so far (for tests). */
  long windowBytes() {
    lock.lock();
    try {
      return windowBytes;
    } finally {
      lock.unlock();
    }
  }

  /**
   * Starts reading window {@code index} in the background.
   *
   * @return the window, or null when all {@link #MAX_BUFFERS} buffers are in use
   */
  private Window start(long index, long size) {
    ByteBuffer buffer = takeBuffer();
    if (buffer == null) {
      return null;
    }
    long from = index * WINDOW_BYTES;
    int length = (int) Math.min(WINDOW_BYTES, size - from);
    CompletableFuture<Integer> done = new CompletableFuture<>();
    PREFETCH.execute(
        () -> {
          try {
            done.complete(FlatFileSystem.readRange(file, buffer.clear().limit(length), from));
          } catch (Throwable t) {
            done.completeExceptionally(t);
          }
        });
    return new Window(index, buffer, done);
  }

  /** Window buffers allocated so far, at most {@link #MAX_BUFFERS} (for tests). */
  int buffersAllocated() {
    lock.lock();
    try {
      return buffers;
    } finally {
      lock.unlock();
    }
  }

  /** A free window buffer (handed back, spare or new), or null when all are in use. */
  private ByteBuffer takeBuffer() {
    ByteBuffer buffer = returned.poll();
    if (buffer == null && !spare.isEmpty()) {
      buffer = spare.pop();
    }
    if (buffer == null && buffers < MAX_BUFFERS) {
      buffer = ByteBuffer.allocateDirect(WINDOW_BYTES);
      buffers++;
    }
    return buffer;
  }

  private Window find(long index) {
    for (Window w : windows) {
      if (w.index == index) {
        return w;
      }
    }
    return null;
  }

  /**
   * Copies the window's bytes at file offset {@code at} into {@code to}, once the window is read.
   *
   * @return false if the window's read failed or was interrupted (the caller reads the range)
   */
  private static boolean copy(Window w, long at, ByteBuffer to) {
    int length;
    try {
      length = w.done.get();
    } catch (ExecutionException e) {
      return false;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      return false;
    }
    int from = (int) (at - w.index * WINDOW_BYTES);
    if (from + to.remaining() > length) {
      return false;
    }
    to.put(0, w.buffer, from, to.remaining());
    return true;
  }

  /** Drops the windows before {@code index}; their buffers are reused once their reads end. */
  private void drop(long index) {
    for (Iterator<Window> it = windows.iterator(); it.hasNext(); ) {
      Window w = it.next();
      if (w.index >= index) {
        break;
      }
      it.remove();
      if (w.done.isDone()) {
        spare.push(w.buffer);
      } else {
        w.done.whenComplete((length, failure) -> returned.add(w.buffer));
      }
    }
  }

  /** Stops reading ahead (FUSE_RELEASE); running window reads finish on their own. */
  @Override
  public void close() {
    lock.lock();
    try {
      closed = true;
      windows.clear();
      spare.clear();
    } finally {
      lock.unlock();
    }
  }
}
