package org.jqcowfs.io;

/**
 * How a {@link Storage} is opened and read. The read policies are on by default; each can be turned
 * off to measure it (docs/decisions/direct-reads-and-aio.md, page-cache-and-push.md).
 *
 * @param writable opened for writing too ({@code O_RDWR}); else read-only
 * @param directReads ranges the page cache does not hold are read around it ({@code O_DIRECT})
 * @param mappedReads cached ranges may be handed out as page-cache views ({@link
 *     Storage.CachedViews#mapCached})
 * @param linuxAio separate uncached ranges of one request are read in Linux AIO batches ({@link
 *     Storage.BatchedReads#readRanges})
 */
public record HostFileOptions(
    boolean writable, boolean directReads, boolean mappedReads, boolean linuxAio) {

  /** Read-only, every read policy on. */
  public static final HostFileOptions DEFAULT = new HostFileOptions(false, true, true, true);

  /** These options, writable or read-only. */
  public HostFileOptions withWritable(boolean on) {
    return new HostFileOptions(on, directReads, mappedReads, linuxAio);
  }
}
