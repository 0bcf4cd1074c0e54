package org.jqcowfs.storage;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * The bytes an image lives in, as the image code asks for them: a POSIX file, an object on a
 * server, memory. Offsets and lengths are in bytes; every read is checked against the current
 * length (a read past the end is an error, never zeros). Implementations are thread-safe; reads and
 * writes at different offsets may run at once.
 *
 * <p>What only some storages can do is an optional capability, asked for by type with {@link
 * #capability}: {@link CachedViews}, {@link BatchedReads}, {@link Holes}, {@link Allocation}. A
 * caller works without each (QEMU's block drivers likewise leave {@code bdrv_co_block_status} or
 * {@code bdrv_co_pdiscard} unimplemented).
 */
public interface Storage extends AutoCloseable {

  /**
   * Alignment in bytes of the offset, length and buffer address of a read that may bypass the page
   * cache: 4 KiB, a multiple of every logical block size O_DIRECT asks for (512 or 4096).
   */
  int DIRECT_ALIGNMENT = 4096;

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

  /** Where the bytes are: what messages name, and what stored names resolve against. */
  Location location();

  /** The current length in bytes. */
  long length() throws IOException;

  /**
   * Reads exactly {@code dst.remaining()} bytes at {@code position}.
   *
   * @throws IOException if the range runs past the end (naming the range), or on an I/O error
   */
  void readFully(ByteBuffer dst, long position) throws IOException;

  /**
   * Reads up to {@code dst.remaining()} bytes at {@code position}, stopping at the end.
   *
   * @return the number of bytes read
   */
  int readUpTo(ByteBuffer dst, long position) throws IOException;

  /**
   * Writes all of {@code src}'s remaining bytes at {@code position}, growing the storage if needed.
   * Not durable until {@link #flush}.
   *
   * @throws java.nio.channels.NonWritableChannelException if opened read-only
   * @throws IOException on an I/O error (ENOSPC included)
   */
  void write(ByteBuffer src, long position) throws IOException;

  /**
   * Makes every completed write durable ({@code fdatasync} of a file).
   *
   * @throws java.nio.channels.NonWritableChannelException if opened read-only
   */
  void flush() throws IOException;

  /**
   * Makes {@code [position, position + length)} read as zeros and lets its space go; the length is
   * kept (write-zeroes with unmap, discard; {@code fallocate(PUNCH_HOLE | KEEP_SIZE)} of a file).
   *
   * @throws java.nio.channels.NonWritableChannelException if opened read-only
   * @throws IOException if the storage cannot, or on an I/O error
   */
  void punchHole(long position, long length) throws IOException;

  /**
   * Sets the length to {@code bytes}: growing leaves a range that reads as zeros ({@code
   * ftruncate}).
   *
   * @throws java.nio.channels.NonWritableChannelException if opened read-only
   * @throws IOException on an I/O error
   */
  void setLength(long bytes) throws IOException;

  /**
   * This storage as the capability {@code type}, or null when it has not got it.
   *
   * @param type one of the capability interfaces nested here
   */
  default <T> T capability(Class<T> type) {
    return type.isInstance(this) ? type.cast(this) : null;
  }

  @Override
  void close() throws IOException;

  /** Capability: views of bytes a page cache holds, handed to the kernel without a copy. */
  interface CachedViews {
    /**
     * {@code [position, position + length)} as a read-only view of the page cache when the cache
     * holds all of it; else null. The caller closes the view.
     */
    CachedView mapCached(long position, int length) throws IOException;
  }

  /** Capability: separate ranges read together in one batch (Linux AIO around the page cache). */
  interface BatchedReads {
    /**
     * Reads, of the ranges {@code dsts[i]} at {@code positions[i]}, those it can read together in
     * one batch; the rest are left for the caller's {@link Storage#readFully}.
     *
     * @return for each range, whether it was read (its buffer's position is then its limit)
     * @throws IOException if a range runs past the end, or a read fails
     */
    boolean[] readRanges(ByteBuffer[] dsts, long[] positions) throws IOException;
  }

  /** Capability: where the storage holds data and where holes (SEEK_DATA/SEEK_HOLE). */
  interface Holes {
    /** The first offset at or after {@code offset} that holds data, or -1 (SEEK_DATA's ENXIO). */
    long seekData(long offset) throws IOException;

    /** The first offset at or after {@code offset} in a hole (the end counts), or -1 past it. */
    long seekHole(long offset) throws IOException;
  }

  /** Capability: space on a disk, counted and reserved. */
  interface Allocation {
    /** Bytes the storage occupies on disk ({@code st_blocks * 512}). */
    long allocatedBytes() throws IOException;

    /**
     * Reserves disk space for {@code [position, position + length)}, growing the storage if needed
     * ({@code fallocate} mode 0).
     *
     * @throws IOException if the file system cannot, is full, or on an I/O error
     */
    void allocate(long position, long length) throws IOException;

    /**
     * Reserves {@code [position, position + length)} as {@link #allocate} does where the file
     * system can; where it cannot ({@code EOPNOTSUPP}: a block device, some network file systems),
     * grows the storage to {@code position + length} bytes if it is shorter. For data about to be
     * written whole: a reserved range is one extent, not blocks reserved one by one.
     *
     * @throws IOException if the file system is full, on an I/O error
     */
    void reserve(long position, long length) throws IOException;
  }
}
