package org.jqcowfs.io;

import java.io.IOException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What the page cache holds of one file, asked with Linux 6.5's {@code cachestat}: whether a range
 * is to be read through the cache ({@link #warm}) or can be mapped from it ({@link #allCached}).
 * Thread-safe.
 */
final class PageCacheProbe {
  private static final Logger LOG = LoggerFactory.getLogger(PosixStorage.class);

  /**
   * How far past a cached range the cache must hold the file too for the range to be read through
   * it, in bytes: beyond the kernel's readahead (twice {@code read_ahead_kb}, 8 MiB here).
   */
  static final long WARM_PROBE_BYTES = 64L << 20;

  /** The page size in bytes: {@code cachestat} counts pages. */
  static final long PAGE_BYTES = Posix.getpagesize();

  /** {@code cachestat} is missing (a kernel before 6.5): no direct reads in this process. */
  private static volatile boolean noCachestat;

  /** A descriptor of the file, opened at first use. */
  interface Descriptor {
    int fd() throws IOException;
  }

  private final Descriptor file;

  PageCacheProbe(Descriptor file) {
    this.file = file;
  }

  /** Whether this kernel answers {@code cachestat} (false once it said ENOSYS). */
  static boolean available() {
    return !noCachestat;
  }

  /**
   * Whether {@code [pos, pos + bytes)} is to be read through the page cache: the cache holds all of
   * it, and also the page {@link #WARM_PROBE_BYTES} past its end (when the file reaches that far),
   * as it does for a file someone has read or is reading. Readahead alone does not reach that far:
   * the header and table reads at open, and a probe of the format, leave readahead marks behind
   * them, and a cached range read through the cache that holds one starts the kernel's readahead
   * further on, which caches the next ranges in full, and so on to the end of the file
   * (docs/decisions/direct-reads-and-aio.md).
   */
  boolean warm(long pos, long bytes, long fileLength) throws IOException {
    if (!allCached(pos, bytes)) {
      return false;
    }
    long probe = pos + bytes + WARM_PROBE_BYTES;
    return probe + PAGE_BYTES > fileLength || allCached(probe - probe % PAGE_BYTES, PAGE_BYTES);
  }

  /**
   * Whether the page cache holds every page of {@code [pos, pos + bytes)} ({@code cachestat}); true
   * when that cannot be told.
   */
  boolean allCached(long pos, long bytes) throws IOException {
    long cached = Posix.cachedPages(file.fd(), pos, bytes);
    if (cached < 0) {
      int errno = Posix.errno();
      if (errno == Posix.ENOSYS) {
        LOG.debug("no cachestat (Linux before 6.5): reads go through the page cache");
        noCachestat = true;
      }
      return true;
    }
    return cached * PAGE_BYTES >= bytes;
  }
}
