package org.jqcowfs.readahead;

import java.nio.ByteBuffer;

/**
 * Takes bytes lent from read-ahead windows instead of a copy (a FUSE reply written with {@code
 * writev}); the windows stay pinned until it gives them back.
 */
public interface Borrower {
  /**
   * Lends {@code bytes} (from position to limit), after the runs lent before; {@code giveBack} runs
   * once the borrower is done with them.
   *
   * @return false, lending nothing, when the borrower takes no more runs
   */
  boolean lend(ByteBuffer bytes, Runnable giveBack);

  /** Gives every run lent back (running their {@code giveBack}s); nothing is lent after this. */
  void release();
}
