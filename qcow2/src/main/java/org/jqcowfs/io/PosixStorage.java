package org.jqcowfs.io;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.locks.ReadWriteLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A file opened read-only for positional reads (never a shared file position). Every read is
 * checked against the file's current length: a read past the end is an error, never zeros.
 * Thread-safe.
 *
 * <p>Reads of data the page cache does not hold go around it when they can ({@link
 * #DIRECT_ALIGNMENT}-aligned file offset and direct buffer, whole pages, Linux 6.5's {@code
 * cachestat} to ask, and a file that opens with {@code O_DIRECT}): the disk writes straight into
 * the caller's buffer, which a reader reuses, instead of into fresh page-cache pages that are then
 * copied once more (each fresh page costs this VM a host fault). Data the cache holds ({@link
 * PageCacheProbe#warm}) is read through it. {@link HostFileOptions#directReads} off turns it off;
 * the figures are in docs/decisions/direct-reads-and-aio.md.
 */
public final class PosixStorage
    implements Storage,
        Storage.CachedViews,
        Storage.BatchedReads,
        Storage.Holes,
        Storage.Allocation {
  private static final Logger LOG = LoggerFactory.getLogger(PosixStorage.class);

  private final Path path;
  private final HostFileOptions options;
  private final FileChannel channel;

  /**
   * A descriptor of our own (not the channel's), opened at first use: {@code lseek}, {@code fstat},
   * {@code cachestat} and {@code mmap} ({@link #mapCached} holds {@link #fdLock}'s read lock).
   */
  private volatile int ownFd = -1;

  private boolean closed; // guarded by this

  /**
   * Held for reading while a descriptor number is in use by a call that must not land on another
   * file (an AIO batch in flight on the direct descriptor of {@link DirectReads}, an {@code mmap}
   * of {@link #ownFd}); {@link #close} closes both under the write lock, so it never frees a number
   * under such a call (a reused number would read or map another file).
   */
  private final ReadWriteLock fdLock = new ReentrantReadWriteLock();

  /** {@code fallocate} is not supported here: {@link #reserve} grows the file instead. */
  private volatile boolean noReserve;

  /** What the page cache holds of the file. */
  private final PageCacheProbe cache;

  /** The reads, direct or through the page cache. */
  private final DirectReads reads;

  private PosixStorage(Path path, HostFileOptions options, FileChannel channel) {
    this.path = path;
    this.options = options;
    this.channel = channel;
    this.cache = new PageCacheProbe(this::fd); // asked only after the constructor returns
    this.reads = DirectReads.open(path, options, channel, cache, fdLock);
  }

  /**
   * Opens a regular file or block device, read-only unless {@code options.writable()}. Directories,
   * FIFOs, sockets and other devices are refused before any blocking open.
   *
   * @throws IOException if the file is missing, not a regular file or block device, or cannot be
   *     opened as asked
   */
  public static PosixStorage open(Path path, HostFileOptions options) throws IOException {
    checkOpenable(path);
    FileChannel channel =
        options.writable()
            ? FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE)
            : FileChannel.open(path, StandardOpenOption.READ);
    return new PosixStorage(path, options, channel);
  }

  /**
   * Refuses, before any open that could block, a missing file, a directory, a FIFO, a socket or a
   * character device: only a regular file or a block device opens.
   *
   * @throws java.nio.file.NoSuchFileException if nothing is there
   * @throws IOException otherwise, naming the path and what it is
   */
  static void checkOpenable(Path path) throws IOException {
    if (!Files.exists(path)) {
      throw new java.nio.file.NoSuchFileException(path.toString(), null, "no such file");
    }
    if (Files.isDirectory(path)) {
      throw new IOException(path + ": is a directory");
    }
    if (!Files.isRegularFile(path) && !isBlockDevice(path)) {
      throw new IOException(path + ": not a regular file or block device");
    }
  }

  private static boolean isBlockDevice(Path path) {
    try {
      Object mode = Files.getAttribute(path, "unix:mode", LinkOption.NOFOLLOW_LINKS);
      return mode instanceof Integer m && (m & 0170000) == 0060000;
    } catch (IOException | UnsupportedOperationException e) {
      return false;
    }
  }

  @Override
  public Location location() {
    return FileLocation.of(path);
  }

  /** The path the file was opened from. */
  public Path path() {
    return path;
  }

  /** The file's current length in bytes. */
  @Override
  public long length() throws IOException {
    return channel.size();
  }

  /**
   * Reads exactly {@code dst.remaining()} bytes at {@code position}.
   *
   * @throws IOException if the range runs past the end of the file (naming the range), or on an I/O
   *     error
   */
  @Override
  public void readFully(ByteBuffer dst, long position) throws IOException {
    long length = length();
    DirectReads.checkRange(path, position, dst.remaining(), length);
    reads.readLoop(dst, position, length, false);
  }

  /**
   * Reads, of the ranges {@code dsts[i]} (their remaining bytes) at file offsets {@code
   * positions[i]}, those made of whole aligned pages that a direct read can take, each in full on
   * the calling thread: with Linux AIO batches the ones the page cache does not hold, copied from
   * it the ones it holds ({@link DirectReads#readRanges}). The others are left for the caller's
   * {@link #readFully}.
   *
   * @return for each range, whether it was read (its buffer's position is then its limit)
   * @throws IOException if a range runs past the end of the file (naming the range), before any
   *     read; or if a read through the page cache fails
   */
  @Override
  public boolean[] readRanges(ByteBuffer[] dsts, long[] positions) throws IOException {
    return reads.readRanges(dsts, positions);
  }

  /**
   * The {@code length} bytes at {@code position}, mapped read-only from the page cache when it
   * holds every page of them ({@code cachestat}); null when it does not, when that cannot be told,
   * when mapping is off ({@link HostFileOptions#mappedReads}) or when {@code mmap} fails: the
   * caller then reads the range. The caller closes the view (see {@link CachedView} for the rules).
   * Mapping costs a fraction of a read (docs/performance.md).
   *
   * @throws IOException if the range runs past the end of the file (naming the range)
   */
  @Override
  public CachedView mapCached(long position, int length) throws IOException {
    if (!options.mappedReads() || !PageCacheProbe.available() || length <= 0) {
      return null;
    }
    DirectReads.checkRange(path, position, length, length());
    if (!cache.allCached(position, length) || !PageCacheProbe.available()) {
      return null;
    }
    long start = position - position % PageCacheProbe.PAGE_BYTES;
    long bytes = position + length - start;
    fdLock.readLock().lock();
    try {
      long mapping =
          Posix.mmap(bytes, Posix.PROT_READ, Posix.MAP_SHARED | Posix.MAP_POPULATE, fd(), start);
      if (mapping == Posix.MAP_FAILED) {
        LOG.debug("{}: mmap of {} bytes at {} failed: errno {}", path, bytes, start, Posix.errno());
        return null;
      }
      return new MappedView(mapping, bytes, (int) (position - start), length);
    } finally {
      fdLock.readLock().unlock();
    }
  }

  /**
   * Reads up to {@code dst.remaining()} bytes at {@code position}, stopping at the end of the file.
   *
   * @return the number of bytes read
   */
  @Override
  public int readUpTo(ByteBuffer dst, long position) throws IOException {
    long length = length();
    if (position >= length) {
      return 0;
    }
    int before = dst.position();
    int limit = dst.limit();
    if (dst.remaining() > length - position) {
      dst.limit(before + (int) (length - position));
    }
    try {
      readFully(dst, position);
    } finally {
      dst.limit(limit);
    }
    return dst.position() - before;
  }

  /**
   * {@code lseek(SEEK_DATA)}: the first offset at or after {@code offset} that holds data, or -1
   * when there is none (ENXIO).
   */
  @Override
  public long seekData(long offset) throws IOException {
    return seek(offset, Posix.SEEK_DATA);
  }

  /**
   * {@code lseek(SEEK_HOLE)}: the first offset at or after {@code offset} in a hole; the end of the
   * file counts as a hole. -1 when {@code offset} is at or past the end (ENXIO).
   */
  @Override
  public long seekHole(long offset) throws IOException {
    return seek(offset, Posix.SEEK_HOLE);
  }

  /** Bytes the file occupies on disk ({@code st_blocks * 512}). */
  @Override
  public long allocatedBytes() throws IOException {
    long blocks = Posix.stBlocks(fd());
    if (blocks < 0) {
      throw new IOException(path + ": fstat failed: errno " + Posix.errno());
    }
    return blocks * 512;
  }

  private long seek(long offset, int whence) throws IOException {
    long r = Posix.lseek(fd(), offset, whence);
    if (r < 0) {
      int errno = Posix.errno();
      if (errno == Posix.ENXIO) {
        return -1;
      }
      throw new IOException(
          path + ": lseek(" + offset + ", " + whence + ") failed: errno " + errno);
    }
    return r;
  }

  private int fd() throws IOException {
    int fd = ownFd;
    if (fd >= 0) {
      return fd;
    }
    synchronized (this) {
      if (closed) {
        throw new java.nio.channels.ClosedChannelException();
      }
      if (ownFd < 0) {
        int mode = options.writable() ? Posix.O_RDWR : Posix.O_RDONLY;
        int opened = Posix.open(path.toString(), mode | Posix.O_CLOEXEC);
        if (opened < 0) {
          throw new IOException(path + ": open failed: errno " + Posix.errno());
        }
        ownFd = opened;
      }
      return ownFd;
    }
  }

  @Override
  public void write(ByteBuffer src, long position) throws IOException {
    requireWritable();
    long pos = position;
    int bytes = src.remaining();
    while (src.hasRemaining()) {
      pos += channel.write(src, pos);
    }
    if (bytes >= WRITE_BEHIND_BYTES) {
      // Start the writeback of a large write now (docs/performance.md, Writes): the disk works
      // while the next requests arrive, and a later fsync finds little left to write.
      Posix.syncFileRange(fd(), position, bytes, Posix.SYNC_FILE_RANGE_WRITE);
    }
  }

  /** Writes of at least this many bytes have their writeback started at once. */
  static final int WRITE_BEHIND_BYTES = 256 << 10;

  @Override
  public void flush() throws IOException {
    requireWritable();
    channel.force(false);
  }

  @Override
  public void punchHole(long position, long length) throws IOException {
    requireWritable();
    int mode = Posix.FALLOC_FL_PUNCH_HOLE | Posix.FALLOC_FL_KEEP_SIZE;
    if (length > 0 && Posix.fallocate(fd(), mode, position, length) < 0) {
      throw rangeFailure("punching a hole", position, length, Posix.errno());
    }
  }

  @Override
  public void setLength(long bytes) throws IOException {
    requireWritable();
    if (Posix.ftruncate(fd(), bytes) < 0) {
      throw new IOException(
          path + ": setting the length to " + bytes + " failed: " + Posix.describe(Posix.errno()));
    }
  }

  @Override
  public void allocate(long position, long length) throws IOException {
    requireWritable();
    if (length > 0 && Posix.fallocate(fd(), 0, position, length) < 0) {
      throw rangeFailure("fallocate", position, length, Posix.errno());
    }
  }

  @Override
  public void reserve(long position, long length) throws IOException {
    requireWritable();
    if (!noReserve && length > 0) {
      if (Posix.fallocate(fd(), 0, position, length) == 0) {
        return;
      }
      int errno = Posix.errno();
      if (errno != Posix.EOPNOTSUPP) {
        throw rangeFailure("reserving", position, length, errno);
      }
      LOG.debug("{}: no fallocate here ({}): clusters grow the file", path, Posix.describe(errno));
      noReserve = true;
    }
    if (length() < position + length) {
      setLength(position + length);
    }
  }

  /** The error of an operation on {@code [position, position + length)}, errno in words. */
  private IOException rangeFailure(String what, long position, long length, int errno) {
    return new IOException(
        path
            + ": "
            + what
            + " at "
            + position
            + " (+"
            + length
            + ") failed: "
            + Posix.describe(errno));
  }

  private void requireWritable() {
    if (!options.writable()) {
      throw new java.nio.channels.NonWritableChannelException();
    }
  }

  @Override
  public void close() throws IOException {
    fdLock.writeLock().lock();
    try {
      synchronized (this) {
        closed = true;
        if (ownFd >= 0) {
          Posix.close(ownFd);
          ownFd = -1;
        }
      }
      reads.closeDescriptor();
    } finally {
      fdLock.writeLock().unlock();
    }
    reads.closeChannel();
    channel.close();
  }
}
