package org.jqcowfs.fuse.transport;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.fuse.protocol.FuseOpcode;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The FUSE kernel protocol over {@code /dev/fuse}: worker threads that each read a request, answer
 * it through the {@link FuseDispatcher} and write the reply. The session ends when the kernel
 * answers ENODEV (the filesystem was unmounted).
 *
 * <p>The first worker reads the mount's fd, blocking: the thread that has just answered takes the
 * caller's next request without a wake-up of another thread (a fio loop of 4 KiB writes with fsync
 * on disk: 5.9k IOPS with two threads reading, 7.5k with one; docs/performance.md). The others,
 * helpers, share a non-blocking clone of it ({@code FUSE_DEV_IOC_CLONE}) in an epoll set, which the
 * first worker arms only while it answers a request of a kind that has recently taken long ({@link
 * #HELP_AFTER_NANOS}: READs that went to the disk, FSYNC, allocating WRITEs that copy from a cold
 * backing file), so that requests arriving meanwhile are answered in parallel. After a quick
 * request, when no slow one has come for a while, the first worker polls a non-blocking clone for
 * {@link #POLL_NANOS} before it blocks: a caller that sends its next request at once finds it awake
 * instead of waking it (fsync after each 4 KiB write on tmpfs: 11-13k IOPS without, 22-26k with).
 *
 * <p>Protocol: the kernel's {@code include/uapi/linux/fuse.h}, 7.31; request = {@code
 * fuse_in_header} (40 bytes) + body, reply = {@code fuse_out_header} (16 bytes) + payload, one
 * read(2) and one write(2) each.
 */
public final class FuseSession implements Closeable {
  private static final Logger LOG = LoggerFactory.getLogger(FuseSession.class);

  /** Request header bytes ({@code struct fuse_in_header}). */
  static final int IN_HEADER_BYTES = FuseDispatcher.IN_HEADER_BYTES;

  /** Largest WRITE payload negotiated (1 MiB, as READs); sizes the request buffers. */
  static final int MAX_WRITE_BYTES = 1024 * 1024;

  /** Request buffer bytes: the kernel refuses reads into buffers smaller than a whole request. */
  static final int REQUEST_BUFFER_BYTES = MAX_WRITE_BYTES + 64 * 1024;

  private final int masterFd;
  private final InvalInodeNotifier notifier;
  private final FuseDispatcher dispatcher;
  private final int threads;
  private final List<Thread> workers = new ArrayList<>();
  private final List<Integer> clonedFds = new ArrayList<>();
  private final CountDownLatch finished;

  /**
   * Helpers look for requests at least this often: the longest a request waits behind a first
   * worker whose request was expected to be quick, and the bound of a missed wake-up.
   */
  private static final int HELPER_WAIT_MILLIS = 100;

  /** How long the first worker polls for the next request after a quick one, in nanoseconds. */
  private static final long POLL_NANOS = 50_000;

  /**
   * The first worker polls only when it has answered no slow request (one that lets the helpers in)
   * for this many nanoseconds: on disk, the same fsync loop was slower when its requests were taken
   * by polling (6.7k IOPS against 7.5k, docs/performance.md).
   */
  private static final long POLL_QUIET_NANOS = 1_000_000;

  /** The first worker's non-blocking clone of the mount's fd, for polling. */
  private int pollFd = -1;

  /** The helpers' fd armed: a request waiting wakes one helper ({@code EPOLLONESHOT}). */
  private static final int ARMED = LibC.EPOLLIN | LibC.EPOLLONESHOT;

  /** The helpers' clone of the fd, non-blocking; -1 with one worker. */
  private int helperFd = -1;

  /** The epoll set of {@link #helperFd} the helpers wait on; -1 with one worker. */
  private int epollFd = -1;

  /** Orders {@link #firstBusy} with the arming of the helpers' fd. */
  private final Object gate = new Object();

  /** The first worker is answering a request (guarded by {@link #gate}). */
  private boolean firstBusy;

  /** {@link #arm}'s {@code struct epoll_event} (guarded by {@link #gate}). */
  private final ByteBuffer event = ByteBuffer.allocateDirect(LibC.EPOLL_EVENT_BYTES);

  /**
   * A session on {@code devFd} (an open {@code /dev/fuse} mounted somewhere).
   *
   * @param threads worker threads, at least 1
   * @param debug log every request and its answer
   */
  public FuseSession(int devFd, FlatFileSystem fs, int threads, boolean debug) {
    if (threads < 1) {
      throw new IllegalArgumentException("threads must be >= 1: " + threads);
    }
    this.masterFd = devFd;
    this.notifier = new InvalInodeNotifier(devFd);
    this.dispatcher = new FuseDispatcher(fs, notifier, debug);
    this.threads = threads;
    this.finished = new CountDownLatch(threads);
  }

  /**
   * Starts the workers; the first answers FUSE_INIT.
   *
   * @throws IOException if a clone of the fd cannot be made
   */
  public void start() throws IOException {
    pollFd = cloneFd(LibC.O_NONBLOCK);
    if (threads > 1) {
      helperFd = cloneFd(LibC.O_NONBLOCK);
      epollFd = LibC.epollCreate1(LibC.EPOLL_CLOEXEC);
      if (epollFd < 0) {
        throw new IOException("epoll on /dev/fuse: " + LibC.strerror(LibC.errno()));
      }
    }
    for (int i = 0; i < threads; i++) {
      Thread t =
          i == 0
              ? new Thread(this::serveFirst, "fuse-worker-0")
              : new Thread(this::serveHelper, "fuse-worker-" + i);
      t.setDaemon(true);
      workers.add(t);
    }
    workers.forEach(Thread::start);
  }

  private int cloneFd(int flags) throws IOException {
    int fd = LibC.open("/dev/fuse", LibC.O_RDWR | LibC.O_CLOEXEC | flags);
    if (fd < 0) {
      throw new IOException("/dev/fuse: " + LibC.strerror(LibC.errno()));
    }
    if (LibC.ioctlInt(fd, LibC.FUSE_DEV_IOC_CLONE, masterFd) != 0) {
      int err = LibC.errno();
      LibC.close(fd);
      throw new IOException("FUSE_DEV_IOC_CLONE: " + LibC.strerror(err));
    }
    clonedFds.add(fd);
    return fd;
  }

  /**
   * Waits until the kernel's FUSE_INIT has been answered, or every worker has ended (unmounted
   * before INIT came: a signal right after the mount).
   *
   * @return false if INIT was not answered within {@code timeoutMillis}, or the workers ended
   */
  public boolean awaitInit(long timeoutMillis) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMillis);
    while (!dispatcher.awaitInit(20)) {
      if (finished.getCount() == 0 || System.nanoTime() > deadline) {
        return false;
      }
    }
    return true;
  }

  /** Waits until every worker has ended (the filesystem was unmounted). */
  public void awaitEnd() throws InterruptedException {
    finished.await();
  }

  /**
   * Waits at most {@code timeoutMillis} for the workers to end.
   *
   * @return whether they all ended
   */
  public boolean awaitEnd(long timeoutMillis) throws InterruptedException {
    return finished.await(timeoutMillis, TimeUnit.MILLISECONDS);
  }

  /**
   * The first worker: a blocking read of the mount's fd, so that at low load the thread that has
   * just answered takes the next request without being woken. While it works on a request, the
   * helpers' fd is armed, so that requests arriving meanwhile wake a helper.
   */
  private void serveFirst() {
    Worker w = new Worker();
    long slowEnd = System.nanoTime(); // when the last slow request was answered
    try {
      while (true) {
        int fd = pollFd;
        long n = System.nanoTime() - slowEnd > POLL_QUIET_NANOS ? poll(w) : -1;
        if (n < 0) {
          fd = masterFd;
          n = LibC.read(masterFd, w.request, REQUEST_BUFFER_BYTES);
        }
        int err = n < 0 ? LibC.errno() : 0;
        if (n < 0 && (err == Errno.EINTR || err == Errno.EAGAIN || err == Errno.ENOENT)) {
          continue; // interrupted, or the request was aborted before we read it
        }
        if (!w.accept(n, err)) {
          return;
        }
        int kind = kind(w.request);
        boolean slow = expectedNanos[kind] >= HELP_AFTER_NANOS;
        boolean helped = slow && epollFd >= 0;
        if (helped) {
          setBusy(true);
        }
        long start = System.nanoTime();
        try {
          handle(fd, w, helped);
        } finally {
          if (helped) {
            setBusy(false);
          }
          long end = System.nanoTime();
          expectedNanos[kind] += (end - start - expectedNanos[kind]) >> 3;
          if (slow) {
            slowEnd = end;
          }
        }
      }
    } finally {
      if (epollFd >= 0) {
        arm(); // ended (unmounted): the helpers wake, read ENODEV and end too
      }
      finished.countDown();
    }
  }

  /**
   * Reads a request from {@link #pollFd}, trying again for up to {@link #POLL_NANOS} while there is
   * none (EAGAIN).
   *
   * @return its bytes, or -1 with errno set
   */
  private long poll(Worker w) {
    long until = System.nanoTime() + POLL_NANOS;
    long n;
    do {
      n = LibC.read(pollFd, w.request, REQUEST_BUFFER_BYTES);
    } while (n < 0 && LibC.errno() == Errno.EAGAIN && System.nanoTime() < until);
    return n;
  }

  /**
   * A helper: waits on the epoll set for a request that arrived while the first worker was busy,
   * reads it without blocking (another worker may have taken it: EAGAIN), re-arms the set while the
   * first worker is still busy, and answers it.
   */
  private void serveHelper() {
    Worker w = new Worker();
    ByteBuffer ready = ByteBuffer.allocateDirect(LibC.EPOLL_EVENT_BYTES);
    try {
      while (true) {
        LibC.epollWait(epollFd, ready, 1, HELPER_WAIT_MILLIS);
        long n = LibC.read(helperFd, w.request, REQUEST_BUFFER_BYTES);
        int err = n < 0 ? LibC.errno() : 0;
        boolean ended = n < 0 && err != Errno.EINTR && err != Errno.EAGAIN && err != Errno.ENOENT;
        synchronized (gate) {
          if (firstBusy || ended) {
            arm(); // ended: the next helper wakes and ends too
          }
        }
        if (n < 0 && !ended) {
          continue;
        }
        if (!w.accept(n, err)) {
          return;
        }
        handle(helperFd, w, false);
      }
    } finally {
      finished.countDown();
    }
  }

  /**
   * The request's kind for {@link #expectedNanos}: its opcode, or one past the last for a WRITE of
   * {@link #LARGE_WRITE_BYTES} or more.
   */
  private static int kind(ByteBuffer request) {
    int opcode = request.getInt(4);
    if (opcode == FuseOpcode.FUSE_WRITE.code
        && request.getInt(IN_HEADER_BYTES + 16) >= LARGE_WRITE_BYTES) {
      return KINDS - 1;
    }
    return opcode >= 0 && opcode < KINDS - 1 ? opcode : 0;
  }

  private static final int KINDS = 64;

  /** WRITEs of at least this many bytes are timed apart from the small ones. */
  private static final int LARGE_WRITE_BYTES = 128 << 10;

  /**
   * Requests of a kind that has recently taken this long (a moving average) let the helpers take
   * the requests that arrive meanwhile; quicker ones are answered by the first worker alone.
   */
  private static final long HELP_AFTER_NANOS = 40_000;

  /**
   * The first worker's moving average of the nanoseconds it took to answer each kind of request
   * (1/8 weight to the newest); only that worker reads and writes it.
   */
  private final long[] expectedNanos = new long[KINDS];

  private void setBusy(boolean busy) {
    if (epollFd >= 0) {
      synchronized (gate) {
        if (busy) {
          arm();
        } else if (firstBusy) {
          // Out of the set, not disarmed: a disarmed fd still wakes its waiters at each request.
          LibC.epollCtl(epollFd, LibC.EPOLL_CTL_DEL, helperFd, 0, event);
        }
        firstBusy = busy;
      }
    }
  }

  /** Arms the helpers' fd: adds it to the epoll set, or re-arms it when it is there. */
  private void arm() {
    synchronized (gate) {
      if (LibC.epollCtl(epollFd, LibC.EPOLL_CTL_MOD, helperFd, ARMED, event) < 0) {
        LibC.epollCtl(epollFd, LibC.EPOLL_CTL_ADD, helperFd, ARMED, event);
      }
    }
  }

  /**
   * A worker's buffers: the request, and the reply ({@link DevFuseReply}); and the dispatcher's
   * {@link FuseDispatcher.Replier} for the request it answers (where, and whether it is the first
   * worker).
   */
  private final class Worker implements FuseDispatcher.Replier {
    int fd;
    boolean first;

    final ByteBuffer request =
        ByteBuffer.allocateDirect(REQUEST_BUFFER_BYTES).order(ByteOrder.nativeOrder());
    final DevFuseReply reply = new DevFuseReply();

    @Override
    public void reply(long unique, int error, int payloadBytes) {
      if (first) {
        setBusy(false);
      }
      reply.send(fd, unique, error, payloadBytes);
    }

    /**
     * Takes the result of a read of {@code n} bytes (errno {@code err} when negative) that was not
     * interrupted: whether there is a request to answer (false: unmounted, or broken).
     */
    boolean accept(long n, int err) {
      if (n < 0) {
        if (err != Errno.ENODEV) {
          LOG.error("reading /dev/fuse: {}", LibC.strerror(err));
        }
        return false; // ENODEV: unmounted
      }
      if (n < IN_HEADER_BYTES) {
        LOG.error("short FUSE request: {} bytes", n);
        return false;
      }
      request.clear().limit((int) n); // position 0: LibC.read fills from index 0
      return true;
    }
  }

  /**
   * Answers one request through the dispatcher; {@code first}: it came to the first worker, which
   * disarms the helpers before it writes the reply (the caller's next request then waits for it,
   * not for a helper).
   */
  private void handle(int fd, Worker w, boolean first) {
    w.fd = fd;
    w.first = first;
    dispatcher.dispatch(w.request, w.reply.payloadBuffer(), w.reply.payload(), w);
  }

  /** Stops the notifier and closes the cloned fds (the mount's own fd belongs to the caller). */
  @Override
  public void close() {
    notifier.close();
    for (int fd : clonedFds) {
      LibC.close(fd);
    }
    clonedFds.clear();
    if (epollFd >= 0) {
      LibC.close(epollFd);
      epollFd = -1;
    }
  }
}
