package org.jqcowfs.fuse.filesystem;

import java.io.IOException;
import java.util.List;
import java.util.function.BooleanSupplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The background walk that makes each file's {@link DataCount} exact, file by file. It holds no
 * lock a READ takes and stops once {@code closing} says so. A damaged range it meets is logged once
 * (a READ or LSEEK there gives EIO) and skipped; an I/O error leaves that file's count at its
 * bound.
 */
final class DataCounter implements Runnable {
  private static final Logger LOG = LoggerFactory.getLogger(FlatFileSystem.class);

  private final List<FlatFile> files;
  private final BooleanSupplier closing;
  private final boolean writable;

  /**
   * @param closing asked before each step: true ends the walk
   * @param writable walk a file again once its writes pause
   */
  DataCounter(List<FlatFile> files, BooleanSupplier closing, boolean writable) {
    this.files = files;
    this.closing = closing;
    this.writable = writable;
  }

  @Override
  public void run() {
    for (FlatFile f : files) {
      countData(f);
    }
    // On a writable mount, a file is counted again once its writes have paused for 2 s: a walk
    // after every write took half a core from a random-write load.
    while (!closing.getAsBoolean() && writable) {
      try {
        Thread.sleep(500);
      } catch (InterruptedException e) {
        return;
      }
      for (FlatFile f : files) {
        if (!closing.getAsBoolean() && f.dataCount().takeChanged(2_000_000_000L)) {
          countData(f);
        }
      }
    }
  }

  private void countData(FlatFile f) {
    {
      try {
        long n =
            f.chain()
                .dataBytes(
                    d ->
                        LOG.error(
                            "{}; reads of guest range {} give EIO", d.getMessage(), d.rangeText()),
                    closing);
        if (n < 0) {
          return;
        }
        if (!f.dataCount().changedSinceWalk()) {
          f.dataCount().setExact(n);
        }
      } catch (IOException | RuntimeException e) {
        if (closing.getAsBoolean()) {
          return;
        }
        LOG.warn(
            "{}: counting data bytes failed, st_blocks stays a bound: {}",
            f.name(),
            e.getMessage());
      }
    }
  }
}
