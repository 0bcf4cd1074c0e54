package org.jqcowfs.fuse.transport;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.fuse.protocol.FuseException;
import org.jqcowfs.fuse.protocol.FuseOpcode;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Answers FUSE requests whatever carries them: decodes {@code fuse_in_header}, owns FUSE_INIT (the
 * session is initialized once it is answered) and FUSE_INTERRUPT (the requests in flight), hands
 * every other opcode to {@link FuseOps}, turns what it throws into an errno ({@link Errno#of}), and
 * gives the answer to the transport's {@link Replier}. No file descriptor, no thread: a {@link
 * FuseSession} feeds it what it reads from {@code /dev/fuse}, and a test can feed it buffers.
 * Thread-safe: requests may be dispatched on many threads at once.
 */
public final class FuseDispatcher {
  private static final Logger LOG = LoggerFactory.getLogger(FuseDispatcher.class);

  /** Request header bytes ({@code struct fuse_in_header}). */
  public static final int IN_HEADER_BYTES = 40;

  /** Marks the unique of an interrupt request ({@code FUSE_INT_REQ_BIT}). */
  public static final long FUSE_INT_REQ_BIT = 1;

  /** Where the answer to one request goes: the transport writes the header and the payload. */
  @FunctionalInterface
  public interface Replier {
    /**
     * @param unique the request's unique (with {@link #FUSE_INT_REQ_BIT} for an interrupt's)
     * @param error 0, or the errno to answer
     * @param payloadBytes the payload's bytes: written at the start of the reply buffer, or lent to
     *     the {@link ReplyPayload}
     */
    void reply(long unique, int error, int payloadBytes);
  }

  private final FuseOps ops;
  private final boolean debug;
  private final CountDownLatch initialized = new CountDownLatch(1);

  /** The uniques of the requests being answered (an interrupt for another one gets EAGAIN). */
  private final Set<Long> inFlight = ConcurrentHashMap.newKeySet();

  /**
   * @param notifier where page cache invalidations go (drop-behind of sequential readers)
   * @param debug log every request and its answer
   */
  public FuseDispatcher(FlatFileSystem fs, InvalInodeNotifier notifier, boolean debug) {
    this.ops = new FuseOps(fs, notifier);
    this.debug = debug;
  }

  /**
   * Answers one request: {@code request} holds {@code fuse_in_header} and the body from position 0
   * to its limit; the payload goes to {@code out} (position 0) or is lent to {@code payload}; then
   * {@code replier} is called once, or never for FUSE_FORGET and FUSE_BATCH_FORGET (which have no
   * answer) and for an interrupt of a request still being answered (it ends soon).
   */
  public void dispatch(ByteBuffer request, ByteBuffer out, ReplyPayload payload, Replier replier) {
    long unique = request.getLong(8);
    long nodeid = request.getLong(16);
    FuseOpcode op = FuseOpcode.of(request.getInt(4));
    ByteBuffer in =
        request
            .slice(IN_HEADER_BYTES, request.limit() - IN_HEADER_BYTES)
            .order(ByteOrder.nativeOrder());
    if (op == FuseOpcode.FUSE_INTERRUPT) {
      interrupt(unique, in.getLong(0), replier);
      return;
    }
    boolean tracked = op != FuseOpcode.FUSE_FORGET && op != FuseOpcode.FUSE_BATCH_FORGET;
    if (tracked) {
      inFlight.add(unique);
    }
    int error = 0;
    int length;
    try {
      length =
          op == FuseOpcode.FUSE_INIT ? ops.init(in, out) : ops.handle(op, nodeid, in, out, payload);
    } catch (Throwable e) {
      error = Errno.of(e, op + " " + describe(nodeid));
      length = 0;
    }
    if (!tracked) {
      return; // FORGET and BATCH_FORGET have no reply
    }
    // Answered whether or not FUSE_INTERRUPT came for it: every request here ends soon.
    inFlight.remove(unique);
    if (error != 0) {
      payload.release();
    }
    if (debug) {
      String at =
          op == FuseOpcode.FUSE_READ || op == FuseOpcode.FUSE_LSEEK ? " at " + in.getLong(8) : "";
      LOG.info(
          "{} node {}{} unique {}: {}",
          op,
          nodeid,
          at,
          unique,
          error == 0 ? length + " bytes" : "errno " + error);
    }
    replier.reply(unique, error, length);
    if (op == FuseOpcode.FUSE_INIT && error == 0) {
      initialized.countDown();
    }
  }

  /**
   * Waits at most {@code timeoutMillis} for FUSE_INIT to be answered.
   *
   * @return whether it was
   */
  public boolean awaitInit(long timeoutMillis) throws InterruptedException {
    return initialized.await(timeoutMillis, TimeUnit.MILLISECONDS);
  }

  private String describe(long nodeid) {
    if (nodeid == FlatFileSystem.ROOT_INODE) {
      return "/";
    }
    try {
      return ops.fs().file(nodeid).name();
    } catch (FuseException e) {
      return "inode " + nodeid;
    }
  }

  /**
   * FUSE_INTERRUPT, as libfuse treats it for a filesystem that registers no interrupt handler: a
   * request still being worked on is answered as usual (it ends soon: jqcowfs has no request that
   * waits without bound), so no caller sees EINTR from a regular file, which most programs do not
   * retry (QEMU's raw driver took the rest of a disk for data after an EINTR from SEEK_HOLE). A
   * target not known yet (another worker has not registered it) gets EAGAIN, and the kernel sends
   * the interrupt again.
   */
  private void interrupt(long unique, long target, Replier replier) {
    if (!inFlight.contains(target)) {
      replier.reply(unique | FUSE_INT_REQ_BIT, Errno.EAGAIN, 0);
    }
  }
}
