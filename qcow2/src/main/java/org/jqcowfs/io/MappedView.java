package org.jqcowfs.io;

import java.nio.ByteBuffer;
import java.util.concurrent.atomic.AtomicBoolean;
import org.jqcowfs.storage.CachedView;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Bytes of a host file that the page cache holds, mapped read-only into this process ({@code mmap}
 * with {@code MAP_SHARED | MAP_POPULATE}), so that a write can take them from the cache itself: a
 * FUSE reply's {@code writev} copies them once, from the cache into the kernel's page of the flat
 * file, where a read would first have copied them into a buffer of ours. Made by {@link
 * PosixStorage#mapCached}; {@link #close} unmaps. Thread-safe.
 *
 * <p>The bytes are the file's as the page cache holds them at each moment, as a read would see
 * them. Two rules keep the process safe:
 *
 * <ul>
 *   <li>No access to {@link #bytes()}, or to any buffer made from it, once {@link #close} has
 *       begun: the memory is gone, and a Java access there crashes the JVM. The owner counts its
 *       users and closes after the last.
 *   <li>If the file shrinks under the mapping, a Java access past the new end raises SIGBUS (an
 *       {@link InternalError} from the JDK's bulk copies); the kernel's own accesses (a {@code
 *       writev} from the mapping) fail with EFAULT instead. Hand the bytes to system calls, as the
 *       FUSE reply path does.
 * </ul>
 */
public final class MappedView implements CachedView {
  private static final Logger LOG = LoggerFactory.getLogger(MappedView.class);

  private final long mapping;
  private final long mapBytes;
  private final ByteBuffer bytes;
  private final AtomicBoolean closed = new AtomicBoolean();

  /**
   * @param mapping the address {@code mmap} returned
   * @param mapBytes the bytes mapped there
   * @param offset where the viewed bytes start in the mapping, in bytes
   * @param length the bytes viewed
   */
  MappedView(long mapping, long mapBytes, int offset, int length) {
    this.mapping = mapping;
    this.mapBytes = mapBytes;
    this.bytes =
        com.kenai.jffi.MemoryIO.getInstance()
            .newDirectByteBuffer(mapping + offset, length)
            .asReadOnlyBuffer();
  }

  @Override
  public ByteBuffer bytes() {
    return bytes.duplicate();
  }

  /** Unmaps the bytes; later calls do nothing. See the class comment for what must precede it. */
  @Override
  public void close() {
    if (closed.compareAndSet(false, true) && Posix.munmap(mapping, mapBytes) != 0) {
      LOG.warn("munmap of {} bytes failed: errno {}", mapBytes, Posix.errno());
    }
  }
}
