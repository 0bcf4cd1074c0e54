package org.jqcowfs.fuse.transport;

import java.nio.file.Path;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;

/** A live mount of a {@link FlatFileSystem}, by either backend. */
public interface Mounted {
  /** Where it is mounted (absolute). */
  Path mountpoint();

  /** Blocks until the filesystem is unmounted (by {@link #stop}, or by anyone from outside). */
  void awaitUnmounted() throws InterruptedException;

  /**
   * Unmounts (SIGTERM, SIGHUP): normally, or lazily when a file is still open, and waits a bounded
   * time for the serving threads to end. Safe to call more than once.
   */
  void stop();
}
