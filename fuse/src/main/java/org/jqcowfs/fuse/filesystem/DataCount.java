package org.jqcowfs.fuse.filesystem;

import org.jqcowfs.chain.BackingChain;

/**
 * The bytes of a flat file that read as data ({@link org.jqcowfs.image.Extent#readsAsData}), for
 * st_blocks. At first a bound that costs no walk: the layers' bytes on disk ({@link
 * BackingChain#hostBytes}), capped by the virtual size, which is enough for cp's {@code st_blocks <
 * st_size / 512} test for holes; exact once the background walk over block status has reached the
 * end of the disk. Thread-safe.
 */
public final class DataCount {
  private volatile long bytes;
  private volatile boolean exact;

  DataCount(long bound) {
    this.bytes = bound;
  }

  /** The bytes, exact or the bound. */
  public long bytes() {
    return bytes;
  }

  /** Whether {@link #bytes} is the walk's exact count. */
  public boolean exact() {
    return exact;
  }

  private volatile boolean changed;
  private volatile long changedNanos;

  void setExact(long exactBytes) {
    bytes = exactBytes;
    exact = true;
  }

  /** Whether a write came since the mark was last taken ({@link #takeChanged}). */
  boolean changedSinceWalk() {
    return changed;
  }

  /** A write changed which bytes read as data: the count is walked again once writes pause. */
  void changed() {
    changedNanos = System.nanoTime();
    changed = true;
    exact = false;
  }

  /**
   * Whether a write came since the last call and none in the last {@code quietNanos}, clearing the
   * mark then.
   */
  boolean takeChanged(long quietNanos) {
    if (!changed || System.nanoTime() - changedNanos < quietNanos) {
      return false;
    }
    changed = false;
    return true;
  }
}
