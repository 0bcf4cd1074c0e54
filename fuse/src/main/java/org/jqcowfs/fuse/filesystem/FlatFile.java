package org.jqcowfs.fuse.filesystem;

import java.io.IOException;
import java.nio.ByteBuffer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.fuse.protocol.FuseException;
import org.jqcowfs.readahead.ReadAheadImage;

/**
 * One flat file: what stat tells of it, and the writes to it (FUSE_WRITE, FUSE_FALLOCATE), which go
 * through its read-ahead image so that no window keeps old bytes.
 *
 * @param name its name in the root directory
 * @param inode its inode number (2, 3, ...)
 * @param chain the backing chain it shows
 * @param dataCount bytes that read as data (for st_blocks = bytes / 512, rounded up)
 * @param mtimeMillis the top image's modification time, milliseconds since the epoch
 * @param uid st_uid: the top image file's owner, or the {@code uid=} option
 * @param gid st_gid: the top image file's group, or the {@code gid=} option
 * @param permissions st_mode's permission bits: the top image file's read bits (0600 -> 0400), or
 *     {@code 0444 & ~umask} with the {@code umask=} option
 */
public record FlatFile(
    String name,
    long inode,
    BackingChain chain,
    ReadAheadImage readAhead,
    DataCount dataCount,
    long mtimeMillis,
    int uid,
    int gid,
    int permissions) {
  /** The virtual disk's length in bytes (st_size). */
  public long size() {
    return chain.size();
  }

  /** st_blocks: the bytes that read as data, in 512-byte units, rounded up. */
  public long blocks() {
    return (dataCount.bytes() + 511) / 512;
  }

  /**
   * Writes {@code src}'s remaining bytes at {@code offset}, up to the end of the disk (FUSE_WRITE):
   * through the read-ahead decorator, so that no window keeps the old bytes.
   *
   * @return the bytes written: fewer than asked when the write reaches past the end
   * @throws FuseException EROFS on a read-only file, ENOSPC at or past the end of the disk (as a
   *     block device answers), EINVAL for a negative offset
   * @throws IOException when the image cannot be written: EIO, or ENOSPC from the host
   */
  public int write(ByteBuffer src, long offset) throws IOException {
    requireWritable();
    if (offset < 0) {
      throw new FuseException(Errno.EINVAL, "negative offset " + offset);
    }
    if (offset >= size()) {
      throw new FuseException(Errno.ENOSPC, "write at " + offset + ", past the end of the disk");
    }
    int n = (int) Math.min(src.remaining(), size() - offset);
    readAhead.write(src.slice(src.position(), n), offset);
    dataCount.changed();
    return n;
  }

  /** {@code fallocate(2)}'s {@code FALLOC_FL_KEEP_SIZE}. */
  static final int FALLOC_FL_KEEP_SIZE = 1;

  /** {@code FALLOC_FL_PUNCH_HOLE}. */
  static final int FALLOC_FL_PUNCH_HOLE = 2;

  /** {@code FALLOC_FL_ZERO_RANGE}. */
  static final int FALLOC_FL_ZERO_RANGE = 0x10;

  /**
   * {@code fallocate(2)} (FUSE_FALLOCATE): PUNCH_HOLE (with KEEP_SIZE) reads back as zeros and
   * gives the clusters back ({@code Image.punchHole}); ZERO_RANGE writes zeroes keeping the
   * allocation; plain allocation inside the disk does nothing (its clusters are allocated on
   * write).
   *
   * @throws FuseException EROFS on a read-only file, EOPNOTSUPP for other modes, EFBIG for a range
   *     past the end of the disk without KEEP_SIZE, EINVAL for a bad range
   * @throws IOException as {@link #write}
   */
  public void fallocate(int mode, long offset, long length) throws IOException {
    requireWritable();
    if (offset < 0 || length <= 0) {
      throw new FuseException(Errno.EINVAL, "range " + offset + " +" + length);
    }
    boolean keepSize = (mode & FALLOC_FL_KEEP_SIZE) != 0;
    long end = Math.min(size(), offset + length);
    if (offset + length > size() && !keepSize) {
      throw new FuseException(Errno.EFBIG, "the disk's size is fixed");
    }
    int kind = mode & ~FALLOC_FL_KEEP_SIZE;
    if (kind != 0 && kind != FALLOC_FL_PUNCH_HOLE && kind != FALLOC_FL_ZERO_RANGE) {
      throw new FuseException(Errno.EOPNOTSUPP, "fallocate mode " + mode);
    }
    if (kind == 0 || offset >= end) {
      return;
    }
    if (kind == FALLOC_FL_PUNCH_HOLE) {
      readAhead.punchHole(offset, end - offset);
    } else {
      readAhead.writeZeroes(offset, end - offset, false);
    }
    dataCount.changed();
  }

  private void requireWritable() {
    if (!chain.writable()) {
      throw new FuseException(Errno.EROFS, "read-only");
    }
  }
}
