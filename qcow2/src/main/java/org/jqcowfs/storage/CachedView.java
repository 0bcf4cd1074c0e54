package org.jqcowfs.storage;

import java.nio.ByteBuffer;

/**
 * Bytes of a storage that a page cache holds, lent read-only without a copy ({@link
 * Storage.CachedViews#mapCached}): a FUSE reply's {@code writev} copies them once, from the cache
 * into the kernel's page of the flat file. {@link #close} gives them back. Thread-safe.
 *
 * <p>The bytes are the storage's as the cache holds them at each moment. Two rules keep the process
 * safe: no access to {@link #bytes()}, or to any buffer made from it, once {@link #close} has begun
 * (the memory is gone, and a Java access there crashes the JVM; the owner counts its users and
 * closes after the last); and the bytes go to system calls only, since a file shrunk under a
 * mapping raises SIGBUS on a Java access past its new end, where the kernel's own access fails with
 * EFAULT.
 */
public interface CachedView extends AutoCloseable {

  /** The viewed bytes: a read-only direct buffer, position 0, limit the length in bytes. */
  ByteBuffer bytes();

  /**
   * Gives the bytes back; later calls do nothing. See the class comment for what must precede it.
   */
  @Override
  void close();
}
