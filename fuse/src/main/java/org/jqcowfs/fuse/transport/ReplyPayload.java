package org.jqcowfs.fuse.transport;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.readahead.Borrower;

/**
 * Where the payload of one worker's reply is: in the worker's reply buffer (the usual case), or in
 * up to {@link #MAX_PARTS} runs of bytes lent to it until the reply is written, such as the
 * read-ahead windows that hold a READ's range (a 1 MiB READ not aligned to the windows spans two).
 * Lent bytes are written with {@code writev} after the header, without a copy into the reply
 * buffer. Reused by its worker, one reply at a time; not thread-safe.
 */
final class ReplyPayload implements Borrower {
  /** Most runs one reply may borrow. */
  static final int MAX_PARTS = 4;

  private final List<ByteBuffer> parts = new ArrayList<>(MAX_PARTS);
  private final List<Runnable> releases = new ArrayList<>(MAX_PARTS);

  /**
   * Lends {@code bytes} (a direct buffer, from its position to its limit) to this reply, after the
   * runs lent before; {@code release} runs once the reply has been written or dropped.
   *
   * @return false, lending nothing, when {@link #MAX_PARTS} runs are lent already
   */
  @Override
  public boolean lend(ByteBuffer bytes, Runnable release) {
    if (parts.size() == MAX_PARTS) {
      return false;
    }
    parts.add(bytes);
    releases.add(release);
    return true;
  }

  /** The lent runs in order, empty when the payload is in the worker's reply buffer. */
  List<ByteBuffer> lent() {
    return parts;
  }

  /** Gives the lent runs back, if any; after this the payload is in the reply buffer again. */
  @Override
  public void release() {
    parts.clear();
    for (Runnable r : releases) {
      r.run();
    }
    releases.clear();
  }
}
