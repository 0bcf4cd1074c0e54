package org.jqcowfs.image;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/**
 * A disk image seen as a flat run of guest bytes: one layer (qcow2 or raw) or a whole backing
 * chain. Implementations are thread-safe: {@link #read} and {@link #blockStatus} may be called from
 * many threads at once, and on a {@link #writable} image so may {@link #write}, {@link
 * #writeZeroes}, {@link #discard} and {@link #flush}. A read-only image refuses the writes.
 */
public interface Image extends Closeable {

  /** The virtual disk size in bytes (QEMU's {@code bdrv_getlength}). */
  long size();

  /** Where this image was opened from (for a chain: its top image). */
  Location location();

  /**
   * Bytes the host files behind this image occupy on disk ({@code st_blocks * 512} of the image
   * file and of an external data file, of every layer for a chain): a bound for the bytes that read
   * as data that costs no walk over the disk (compressed clusters can make it smaller).
   *
   * @throws IOException if a file cannot be asked
   */
  long hostBytes() throws IOException;

  /**
   * Reads {@code dst.remaining()} bytes at {@code guestOffset} into {@code dst}, advancing its
   * position to its limit. Ranges that this image does not allocate read from its backing image
   * ({@link #setBacking}), as zeros where it has none or it is shorter.
   *
   * @param dst destination; its remaining bytes are filled completely
   * @param guestOffset offset in bytes into the virtual disk, {@code 0 <= guestOffset} and {@code
   *     guestOffset + dst.remaining() <= size()}
   * @throws IllegalArgumentException if the range lies outside {@code [0, size())}
   * @throws IOException on an I/O error or a corrupt structure in the affected range ({@link
   *     ImageFormatException} names the place)
   */
  void read(ByteBuffer dst, long guestOffset) throws IOException;

  /**
   * Links {@code backing} as the image below this one, once, when the chain opens (QEMU's {@code
   * bs->backing}, imago's {@code set_backing}): from then on the ranges this layer does not
   * allocate read from it, and new clusters copy what it reads (copy-on-write). Its block status is
   * the status of the chain from it down. This default, for a format that never has a backing file
   * (raw), refuses.
   *
   * @param backing the image below, or null for none
   * @throws UnsupportedOperationException if the format has no backing files
   */
  default void setBacking(Image backing) {
    throw new UnsupportedOperationException(location() + ": this image format has no backing file");
  }

  /**
   * The {@code length} guest bytes at {@code guestOffset} as a read-only view of the page cache
   * ({@link Storage.CachedViews#mapCached}), when one host file stores all of them raw, in one
   * contiguous range that the cache holds; else null, and the caller reads them with {@link #read}.
   * The view holds what {@link #read} would write. The caller closes it. This default has no view.
   *
   * @param guestOffset offset in bytes, with {@code [guestOffset, guestOffset + length)} in {@code
   *     [0, size())}
   * @param length bytes, {@code >= 1}
   * @throws IllegalArgumentException if the range lies outside {@code [0, size())}
   * @throws IOException on an I/O error or a corrupt L1/L2 entry in the range
   */
  default CachedView cachedView(long guestOffset, int length) throws IOException {
    checkRange(guestOffset, length, size());
    return null;
  }

  /**
   * The block status of this layer alone at {@code guestOffset}: one {@link Extent} starting at
   * {@code guestOffset} whose status holds for all its bytes, of length in {@code [1, maxLength]}.
   * Matches QEMU's {@code bdrv_co_block_status} for this node (qcow2: {@code
   * qcow2_co_block_status}; raw: {@code raw_co_block_status} of file-posix).
   *
   * @param guestOffset offset in bytes, {@code 0 <= guestOffset < size()}
   * @param maxLength the most bytes the answer may cover, {@code >= 1}
   * @throws IOException on an I/O error or a corrupt L1/L2 entry
   */
  Extent blockStatus(long guestOffset, long maxLength) throws IOException;

  /**
   * The block status of {@code [guestOffset, guestOffset + length)} as a list of maximal extents:
   * neighbours with the same status (and, where present, contiguous host offsets in the same file)
   * are merged.
   *
   * @throws IOException as {@link #blockStatus(long, long)}
   */
  default List<Extent> extents(long guestOffset, long length) throws IOException {
    Extent.Merger merger = new Extent.Merger();
    long end = guestOffset + length;
    for (long pos = guestOffset; pos < end; ) {
      Extent next = blockStatus(pos, end - pos);
      merger.add(next);
      pos = next.end();
    }
    return merger.finish();
  }

  /** Whether the image was opened for writing. This default: no. */
  default boolean writable() {
    return false;
  }

  /**
   * Writes {@code src}'s remaining bytes at {@code guestOffset}, advancing its position to its
   * limit; not durable until {@link #flush}. This default refuses.
   *
   * @throws IllegalArgumentException if the range lies outside {@code [0, size())}
   * @throws IOException if the image is read-only, on a host I/O error (ENOSPC included) or on
   *     damaged metadata in the range
   */
  default void write(ByteBuffer src, long guestOffset) throws IOException {
    throw readOnly();
  }

  /**
   * Makes {@code [guestOffset, guestOffset + bytes)} read as zeros; with {@code mayUnmap} the
   * storage behind whole clusters may be given back. This default refuses.
   *
   * @throws IllegalArgumentException if the range lies outside {@code [0, size())}
   * @throws IOException as {@link #write}
   */
  default void writeZeroes(long guestOffset, long bytes, boolean mayUnmap) throws IOException {
    throw readOnly();
  }

  /**
   * Makes {@code [guestOffset, guestOffset + bytes)} read as zeros and lets the storage behind it
   * go, as Linux's {@code FALLOC_FL_PUNCH_HOLE} on the flat file promises. This default is {@link
   * #writeZeroes} with unmap.
   *
   * @throws IllegalArgumentException if the range lies outside {@code [0, size())}
   * @throws IOException as {@link #write}
   */
  default void punchHole(long guestOffset, long bytes) throws IOException {
    writeZeroes(guestOffset, bytes, true);
  }

  /**
   * Tells the image that {@code [guestOffset, guestOffset + bytes)} is no longer needed: what it
   * reads afterwards is the format's business (QEMU's discard). This default refuses.
   *
   * @throws IllegalArgumentException if the range lies outside {@code [0, size())}
   * @throws IOException as {@link #write}
   */
  default void discard(long guestOffset, long bytes) throws IOException {
    throw readOnly();
  }

  /**
   * Makes every completed write durable. This default, for a read-only image, does nothing.
   *
   * @throws IOException if writing metadata or syncing fails
   */
  default void flush() throws IOException {}

  private IOException readOnly() {
    return new IOException(location() + ": opened read-only");
  }

  /** Fills {@code dst}'s remaining bytes with zeros from a shared zero buffer. */
  static void fillZeros(ByteBuffer dst) {
    while (dst.hasRemaining()) {
      int n = Math.min(dst.remaining(), Zeros.BUFFER.capacity());
      dst.put(Zeros.BUFFER.duplicate().limit(n));
    }
  }

  /**
   * Throws {@link IllegalArgumentException} unless {@code [offset, offset + length)} lies in {@code
   * [0, size)}.
   */
  static void checkRange(long offset, long length, long size) {
    if (offset < 0 || length < 0 || offset > size || length > size - offset) {
      throw new IllegalArgumentException(
          "range [" + offset + ", +" + length + ") outside the virtual disk of " + size + " bytes");
    }
  }

  /** The shared zeros of {@link #fillZeros}. */
  final class Zeros {
    static final ByteBuffer BUFFER = ByteBuffer.allocateDirect(1 << 20).asReadOnlyBuffer();

    private Zeros() {}
  }
}
