package org.jqcowfs.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;

/**
 * A file on the host that holds an image's bytes: positional reads and writes, durability, holes.
 * Implementations are thread-safe; reads and writes at different offsets may run at once. Offsets
 * and lengths are in bytes.
 */
public interface HostFile extends AutoCloseable {

  /**
   * Alignment in bytes of the file offset, length and buffer address of a read that may bypass the
   * page cache: 4 KiB, a multiple of every logical block size O_DIRECT asks for (512 or 4096).
   */
  int DIRECT_ALIGNMENT = 4096;

  /** Sees every read a host file issues to the operating system, just before it is issued. */
  @FunctionalInterface
  interface ReadObserver {
    /**
     * @param path the file read
     * @param position host offset of the read, in bytes
     * @param bytes length of the read, in bytes
     */
    void read(Path path, long position, long bytes);
  }

  /** Opens {@code path} read-only with the default read policies ({@link PosixHostFile#open}). */
  static HostFile open(Path path) throws IOException {
    return PosixHostFile.open(path, HostFileOptions.DEFAULT);
  }

  /** Opens {@code path} as {@code options} say ({@link PosixHostFile#open}). */
  static HostFile open(Path path, HostFileOptions options) throws IOException {
    return PosixHostFile.open(path, options);
  }

  /**
   * Installs {@code o} (or none, with null) as the observer of every read of every file: for tests
   * (the hostile-image corpus checks that no read falls outside the file) and tracing.
   */
  static void observeReads(ReadObserver o) {
    PosixHostFile.observeReads(o);
  }

  /**
   * A direct buffer of capacity {@code bytes} whose first byte is {@link
   * #DIRECT_ALIGNMENT}-aligned, so that reads into it may go around the page cache.
   */
  static ByteBuffer alignedBuffer(int bytes) {
    int rounded = (bytes + DIRECT_ALIGNMENT - 1) & -DIRECT_ALIGNMENT;
    return ByteBuffer.allocateDirect(rounded + DIRECT_ALIGNMENT)
        .alignedSlice(DIRECT_ALIGNMENT)
        .slice(0, bytes);
  }

  /** The path the file was opened from. */
  Path path();

  /** The file's current length in bytes. */
  long length() throws IOException;

  /**
   * Reads exactly {@code dst.remaining()} bytes at {@code position}.
   *
   * @throws IOException if the range runs past the end of the file (naming the range), or on an I/O
   *     error
   */
  void readFully(ByteBuffer dst, long position) throws IOException;

  /**
   * Reads up to {@code dst.remaining()} bytes at {@code position}, stopping at the end of the file.
   *
   * @return the number of bytes read
   */
  int readUpTo(ByteBuffer dst, long position) throws IOException;

  /**
   * Reads, of the ranges {@code dsts[i]} at {@code positions[i]}, those it can read together in one
   * batch (Linux AIO around the page cache, or copies from it); the rest are left for the caller's
   * {@link #readFully}.
   *
   * @return for each range, whether it was read (its buffer's position is then its limit)
   * @throws IOException if a range runs past the end of the file, or a read fails
   */
  boolean[] readRanges(ByteBuffer[] dsts, long[] positions) throws IOException;

  /**
   * {@code [position, position + length)} as a read-only view of the page cache when the cache
   * holds all of it; else null. The caller closes the view.
   */
  CachedView mapCached(long position, int length) throws IOException;

  /** The first offset at or after {@code offset} that holds data, or -1 (SEEK_DATA's ENXIO). */
  long seekData(long offset) throws IOException;

  /** The first offset at or after {@code offset} in a hole (the end counts), or -1 past the end. */
  long seekHole(long offset) throws IOException;

  /** Bytes the file occupies on disk ({@code st_blocks * 512}). */
  long allocatedBytes() throws IOException;

  /**
   * Writes all of {@code src}'s remaining bytes at {@code position}, growing the file if needed.
   * Not durable until {@link #flush}.
   *
   * @throws java.nio.channels.NonWritableChannelException if the file was opened read-only
   * @throws IOException on an I/O error (ENOSPC included)
   */
  void write(ByteBuffer src, long position) throws IOException;

  /**
   * Makes every completed write durable ({@code fdatasync}).
   *
   * @throws java.nio.channels.NonWritableChannelException if the file was opened read-only
   */
  void flush() throws IOException;

  /**
   * Deallocates {@code [position, position + length)}, which then reads as zeros; the length of the
   * file is kept ({@code fallocate(PUNCH_HOLE | KEEP_SIZE)}).
   *
   * @throws java.nio.channels.NonWritableChannelException if the file was opened read-only
   * @throws IOException if the file system cannot punch holes, or on an I/O error
   */
  void punchHole(long position, long length) throws IOException;

  /**
   * Sets the file's length to {@code bytes}: growing it leaves a hole ({@code ftruncate}).
   *
   * @throws java.nio.channels.NonWritableChannelException if the file was opened read-only
   * @throws IOException on an I/O error
   */
  void setLength(long bytes) throws IOException;

  /**
   * Reserves disk space for {@code [position, position + length)}, growing the file if needed
   * ({@code fallocate} mode 0).
   *
   * @throws java.nio.channels.NonWritableChannelException if the file was opened read-only
   * @throws IOException if the file system cannot, is full, or on an I/O error
   */
  void allocate(long position, long length) throws IOException;

  /**
   * Reserves {@code [position, position + length)} as {@link #allocate} does where the file system
   * can; where it cannot ({@code EOPNOTSUPP}: a block device, some network file systems), grows the
   * file to {@code position + length} bytes if it is shorter, as {@link #setLength} would. For data
   * about to be written whole: a reserved range is one extent, not blocks reserved one by one.
   *
   * @throws java.nio.channels.NonWritableChannelException if the file was opened read-only
   * @throws IOException if the file system is full, on an I/O error
   */
  void reserve(long position, long length) throws IOException;

  @Override
  void close() throws IOException;
}
