package org.jqcowfs.raw;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.jqcowfs.storage.StorageOpener;

/**
 * A raw image: guest offset = host offset. Its size is the file's length rounded up to 512 bytes,
 * as QEMU's {@code total_sectors}; the tail past the file reads as zeros. Block status comes from
 * the file's holes (SEEK_DATA/SEEK_HOLE), as QEMU's file-posix {@code raw_co_block_status}; a
 * storage that cannot tell holes ({@link Storage.Holes}) holds data up to its end.
 */
public final class RawImage implements Image {
  private final Storage file;
  private final Storage.Holes holes;
  private final Storage.CachedViews views;
  private final Storage.Allocation allocation;
  private final boolean writable;
  private volatile long fileLength;
  private final long size;

  private RawImage(Storage file, long fileLength, boolean writable) {
    this.file = file;
    this.holes = file.capability(Storage.Holes.class);
    this.views = file.capability(Storage.CachedViews.class);
    this.allocation = file.capability(Storage.Allocation.class);
    this.fileLength = fileLength;
    this.writable = writable;
    this.size = (fileLength + 511) & ~511L;
  }

  /** Opens a raw image read-only with the default read policies. */
  public static RawImage open(Path path) throws IOException {
    return open(FileLocation.of(path), PosixOpener.DEFAULT, false);
  }

  /**
   * Opens the raw image at {@code location} through {@code opener}, read-only unless {@code
   * writable}.
   *
   * @throws IOException if the storage is missing, not a regular file or block device, or
   *     unreadable
   */
  public static RawImage open(Location location, StorageOpener opener, boolean writable)
      throws IOException {
    Storage f = opener.open(location, writable);
    try {
      return new RawImage(f, f.length(), writable);
    } catch (IOException | RuntimeException e) {
      f.close();
      throw e;
    }
  }

  @Override
  public Location location() {
    return file.location();
  }

  @Override
  public long size() {
    return size;
  }

  @Override
  public void read(ByteBuffer dst, long guestOffset) throws IOException {
    Image.checkRange(guestOffset, dst.remaining(), size);
    long inFile = Math.max(0, Math.min(dst.remaining(), fileLength - guestOffset));
    if (inFile > 0) {
      file.readFully(dst.slice(dst.position(), (int) inFile), guestOffset);
      dst.position(dst.position() + (int) inFile);
    }
    Image.fillZeros(dst);
  }

  /**
   * A view of the range when the file holds all of it (not the zeros past its end) and it is
   * cached.
   */
  @Override
  public CachedView cachedView(long guestOffset, int length) throws IOException {
    Image.checkRange(guestOffset, length, size);
    return views != null && guestOffset + length <= fileLength
        ? views.mapCached(guestOffset, length)
        : null;
  }

  @Override
  public Extent blockStatus(long guestOffset, long maxLength) throws IOException {
    Image.checkRange(guestOffset, 1, size);
    long len = Math.min(maxLength, size - guestOffset);
    long data = seekData(guestOffset);
    Location p = file.location();
    if (data < 0) {
      return new Extent(guestOffset, len, true, false, true, false, guestOffset, p);
    }
    if (data == guestOffset) {
      long hole = seekHole(guestOffset);
      long n = hole < 0 ? len : Math.min(len, ((hole - guestOffset) + 511) & ~511L);
      return new Extent(guestOffset, n, true, true, false, false, guestOffset, p);
    }
    return new Extent(
        guestOffset, Math.min(len, data - guestOffset), true, false, true, false, guestOffset, p);
  }

  /** SEEK_DATA of the storage; without {@link Storage.Holes}, all of it is data. */
  private long seekData(long offset) throws IOException {
    return holes != null ? holes.seekData(offset) : offset < fileLength ? offset : -1;
  }

  /** SEEK_HOLE of the storage; without {@link Storage.Holes}, its end. */
  private long seekHole(long offset) throws IOException {
    return holes != null ? holes.seekHole(offset) : offset <= fileLength ? fileLength : -1;
  }

  @Override
  public boolean writable() {
    return writable;
  }

  /** Writes in place (guest offset = host offset); the tail past a short file extends it. */
  @Override
  public void write(ByteBuffer src, long guestOffset) throws IOException {
    Image.checkRange(guestOffset, src.remaining(), size);
    requireWritable();
    long end = guestOffset + src.remaining();
    file.write(src, guestOffset);
    grown(end);
  }

  /**
   * Zeros: with {@code mayUnmap} a hole punched where the file has bytes (file-posix's {@code
   * FALLOC_FL_PUNCH_HOLE}), else zeros written.
   */
  @Override
  public void writeZeroes(long guestOffset, long bytes, boolean mayUnmap) throws IOException {
    Image.checkRange(guestOffset, bytes, size);
    requireWritable();
    long inFile = Math.max(0, Math.min(bytes, fileLength - guestOffset));
    if (mayUnmap && inFile > 0) {
      file.punchHole(guestOffset, inFile);
      guestOffset += inFile;
      bytes -= inFile;
    }
    while (bytes > 0) {
      int n = (int) Math.min(bytes, 1 << 20);
      file.write(ByteBuffer.allocate(n), guestOffset);
      guestOffset += n;
      bytes -= n;
      grown(guestOffset);
    }
  }

  /** Nothing: QEMU's raw files ignore discards unless told otherwise ({@code discard=ignore}). */
  @Override
  public void discard(long guestOffset, long bytes) throws IOException {
    Image.checkRange(guestOffset, bytes, size);
    requireWritable();
  }

  @Override
  public void flush() throws IOException {
    if (writable) {
      file.flush();
    }
  }

  private void requireWritable() throws IOException {
    if (!writable) {
      throw new IOException(file.location() + ": opened read-only");
    }
  }

  private synchronized void grown(long end) {
    fileLength = Math.max(fileLength, end);
  }

  @Override
  public long hostBytes() throws IOException {
    return allocation != null ? allocation.allocatedBytes() : file.length();
  }

  @Override
  public void close() throws IOException {
    file.close();
  }
}
