package org.jqcowfs.qcow2.metadata;

import java.io.IOException;

/**
 * Told by {@link Refcounts} of each host range that becomes metadata (refcount blocks, a new table)
 * or stops being metadata (an old refcount table), so that overlap checks see it.
 */
public interface MetadataSink {
  /**
   * The {@code bytes} bytes at host offset {@code hostOffset} are about to become metadata.
   *
   * @throws IOException if the range overlaps metadata already there (nothing is written then)
   */
  void added(long hostOffset, long bytes) throws IOException;

  /** The {@code bytes} bytes at host offset {@code hostOffset} are metadata no more. */
  void removed(long hostOffset, long bytes);
}
