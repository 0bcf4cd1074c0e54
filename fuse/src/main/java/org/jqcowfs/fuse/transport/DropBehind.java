package org.jqcowfs.fuse.transport;

/**
 * Drop-behind for one open flat file: once its READ requests stream forward, the kernel's page
 * cache of what lies well behind them is invalidated ({@code FUSE_NOTIFY_INVAL_INODE}), so a
 * sequential copy keeps a few tens of MiB of the file cached instead of all of it.
 *
 * <p>Why: a cp of a 3 GB image would otherwise leave 3 GB of page cache beside the image file's
 * own, and on this kind of machine (a VM that hands freed memory back to its host) a fresh page
 * costs a host fault to touch (figures: docs/decisions/page-cache-and-push.md).
 *
 * <p>A READ belongs to the current run when it starts no further than {@link #SLACK_BYTES} past the
 * run's front (readahead requests of one window may be answered out of order), not before the run's
 * start, and the run stays dense: its READs cover all but {@link #SLACK_BYTES} of its span. Any
 * other READ starts a new run there. Only bytes a run has passed by {@link #LAG_BYTES} are dropped,
 * in steps of at least {@link #STEP_BYTES}, so random readers (fio, a filesystem in a loop device)
 * never drop anything and a reader's own readahead is never touched. The image is read-only, so
 * dropping never loses data: a later read of that range asks again.
 *
 * <p>Thread-safe; READs of one open file may be answered on several workers at once.
 */
final class DropBehind {
  /** How far behind the run's front the cache is kept, in bytes (above the 8 MiB readahead). */
  static final long LAG_BYTES = 32L << 20;

  /** Smallest range dropped at once, in bytes. */
  static final long STEP_BYTES = 16L << 20;

  /** How far past the front a READ may start and still continue the run, in bytes. */
  static final long SLACK_BYTES = 16L << 20;

  /** Invalidates page cache: {@code (offset, length)} in bytes of the file. */
  @FunctionalInterface
  interface Dropper {
    void drop(long offset, long length);
  }

  private final Dropper dropper;

  /** The run: READs of {@code covered} bytes span [start, front); [start, dropped) is dropped. */
  private long start;

  private long front;
  private long covered;
  private long dropped;

  DropBehind(Dropper dropper) {
    this.dropper = dropper;
  }

  /**
   * Records a READ of {@code length} bytes at {@code offset}; drops the range the run has passed by
   * {@link #LAG_BYTES} when it has grown by {@link #STEP_BYTES}.
   */
  void read(long offset, long length) {
    long from;
    long to;
    synchronized (this) {
      long end = offset + length;
      boolean continues =
          offset >= start
              && offset <= front + SLACK_BYTES
              && covered + length + SLACK_BYTES >= Math.max(front, end) - start;
      if (!continues) {
        start = offset;
        front = offset;
        covered = 0;
        dropped = offset;
      }
      covered += length;
      front = Math.max(front, end);
      to = front - LAG_BYTES;
      if (to - dropped < STEP_BYTES) {
        return;
      }
      from = dropped;
      dropped = to;
    }
    dropper.drop(from, to - from);
  }
}
