package org.jqcowfs.io;

import static org.jqcowfs.storage.Storage.DIRECT_ALIGNMENT;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.concurrent.locks.ReadWriteLock;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The reads of one {@link PosixStorage}: around the page cache with {@code O_DIRECT} (one at a
 * time, or in Linux AIO batches) when the cache does not hold the range, through it otherwise and
 * whenever a direct read fails (docs/decisions/direct-reads-and-aio.md). Thread-safe.
 */
final class DirectReads {
  private static final Logger LOG = LoggerFactory.getLogger(PosixStorage.class);

  private final Path path;
  private final FileChannel channel;
  private final PageCacheProbe cache;

  /** {@link PosixStorage}'s lock over descriptor numbers, held for reading by an AIO batch. */
  private final ReadWriteLock fdLock;

  /** The file opened with {@code O_DIRECT}, or null ({@link #openDirect}). */
  private final FileChannel directChannel;

  /**
   * The file opened with {@code O_DIRECT} as a descriptor of our own, for {@link #readRanges}'s
   * Linux AIO batches; -1 when there is none. Guarded by {@link #fdLock}.
   */
  private volatile int directFd;

  /** A direct read of this file failed: never try again. */
  private volatile boolean noDirect;

  private DirectReads(
      Path path,
      FileChannel channel,
      PageCacheProbe cache,
      ReadWriteLock fdLock,
      FileChannel directChannel,
      int directFd) {
    this.path = path;
    this.channel = channel;
    this.cache = cache;
    this.fdLock = fdLock;
    this.directChannel = directChannel;
    this.directFd = directFd;
  }

  /**
   * The reads of the file at {@code path}, read through {@code channel}, with the direct
   * descriptors {@code options} asks for opened now, so that a daemon's descriptors do not change
   * under load.
   */
  static DirectReads open(
      Path path,
      HostFileOptions options,
      FileChannel channel,
      PageCacheProbe cache,
      ReadWriteLock fdLock) {
    FileChannel direct = options.directReads() ? openDirect(path) : null;
    int directFd =
        direct != null && options.linuxAio() && LinuxAio.available()
            ? Posix.open(path.toString(), Posix.O_RDONLY | Posix.O_CLOEXEC | Posix.O_DIRECT)
            : -1; // open gives -1 on failure
    return new DirectReads(path, channel, cache, fdLock, direct, directFd);
  }

  /**
   * Reads {@code dst}'s remaining bytes at {@code position}, through the page cache when {@code
   * cached}, else as {@link #read} decides.
   */
  void readLoop(ByteBuffer dst, long position, long length, boolean cached) throws IOException {
    long pos = position;
    while (dst.hasRemaining()) {
      int n = cached ? channel.read(dst, pos) : read(dst, pos, length);
      if (n < 0) {
        throw new IOException(path + ": unexpected end of file at 0x" + Long.toHexString(pos));
      }
      pos += n;
    }
  }

  /**
   * Reads, of the ranges {@code dsts[i]} (their remaining bytes) at file offsets {@code
   * positions[i]}, those made of whole aligned pages (as {@link PosixStorage#readFully} reads
   * around the page cache), each in full, on the calling thread: the ones the page cache does not
   * hold (see {@link PageCacheProbe#warm}) with Linux AIO batches ({@link LinuxAio}) of at most
   * {@link LinuxAio#MAX_BATCH} reads, the ones it holds copied from it. The others, and any whose
   * direct read fails, are left untouched for the caller to read with {@link
   * PosixStorage#readFully}, on threads of its own if it likes. Nothing is read when fewer than two
   * ranges qualify, or when this file has no AIO descriptor.
   *
   * @return for each range, whether it was read (its buffer's position is then its limit)
   * @throws IOException if a range runs past the end of the file (naming the range), before any
   *     read; or if a read through the page cache fails
   */
  boolean[] readRanges(ByteBuffer[] dsts, long[] positions) throws IOException {
    int n = dsts.length;
    boolean[] done = new boolean[n];
    if (directFd < 0 || noDirect || !PageCacheProbe.available() || n < 2 || !LinuxAio.available()) {
      return done;
    }
    long length = channel.size();
    int[] picked = new int[n];
    int[] cached = new int[n];
    int m = 0;
    int c = 0;
    for (int i = 0; i < n; i++) {
      int bytes = dsts[i].remaining();
      checkRange(path, positions[i], bytes, length);
      if (bytes > 0
          && (bytes & (DIRECT_ALIGNMENT - 1)) == 0
          && directPossible(dsts[i], positions[i])) {
        if (cache.warm(positions[i], bytes, length)) {
          cached[c++] = i;
        } else {
          picked[m++] = i;
        }
      }
    }
    if (m + c < 2) {
      return done;
    }
    // Asked once: the cached ranges are not asked about again by readFully.
    for (int k = 0; k < c; k++) {
      readLoop(dsts[cached[k]], positions[cached[k]], length, true);
      done[cached[k]] = true;
    }
    if (m == 0) {
      return done;
    }
    ByteBuffer[] batch = new ByteBuffer[Math.min(m, LinuxAio.MAX_BATCH)];
    long[] batchPositions = new long[batch.length];
    long[] results = new long[batch.length];
    for (int from = 0; from < m; from += batch.length) {
      int count = Math.min(batch.length, m - from);
      for (int j = 0; j < count; j++) {
        batch[j] = dsts[picked[from + j]];
        batchPositions[j] = positions[picked[from + j]];
      }
      fdLock.readLock().lock();
      try {
        if (directFd < 0) {
          throw new java.nio.channels.ClosedChannelException();
        }
        LinuxAio.read(directFd, batch, batchPositions, count, results);
      } finally {
        fdLock.readLock().unlock();
      }
      for (int j = 0; j < count; j++) {
        if (results[j] == batch[j].remaining()) {
          batch[j].position(batch[j].limit());
          done[picked[from + j]] = true;
        } else if (results[j] < 0 && results[j] != Long.MIN_VALUE) {
          noDirect = true;
          LOG.debug(
              "{}: direct read at {} failed (errno {}), reading through the page cache",
              path,
              batchPositions[j],
              -results[j]);
        }
      }
    }
    return done;
  }

  /**
   * One positional read: around the page cache when {@link #directPossible} and the range is not
   * {@link PageCacheProbe#warm}, through it otherwise, and whenever a direct read fails: an error
   * then comes from the ordinary read of the same range, and this file is read through the cache
   * from then on.
   */
  int read(ByteBuffer dst, long pos, long fileLength) throws IOException {
    // The whole pages of the range; a tail shorter than a page (a file that ends mid-page) is read
    // through the cache by the next call.
    int pages = dst.remaining() & -DIRECT_ALIGNMENT;
    FileChannel direct = directChannel;
    if (direct != null
        && pages > 0
        && directPossible(dst, pos)
        && !cache.warm(pos, pages, fileLength)) {
      int start = dst.position();
      int limit = dst.limit();
      try {
        return direct.read(dst.limit(start + pages), pos);
      } catch (IOException e) {
        noDirect = true;
        dst.position(start);
        LOG.debug("{}: direct read at {} failed, reading through the page cache", path, pos, e);
      } finally {
        dst.limit(limit);
      }
    }
    return channel.read(dst, pos);
  }

  private boolean directPossible(ByteBuffer dst, long pos) {
    return !noDirect
        && PageCacheProbe.available()
        && dst.isDirect()
        && (pos & (DIRECT_ALIGNMENT - 1)) == 0
        && dst.alignmentOffset(dst.position(), DIRECT_ALIGNMENT) == 0;
  }

  /**
   * Refuses a read of {@code want} bytes at {@code position} that passes {@code length}.
   *
   * @throws IOException naming the file, the range and the length
   */
  static void checkRange(Path path, long position, long want, long length) throws IOException {
    if (position < 0 || position > length || want > length - position) {
      throw new IOException(
          path
              + ": read of "
              + want
              + " bytes at "
              + "0x"
              + Long.toHexString(position)
              + " runs past the end of the file ("
              + "0x"
              + Long.toHexString(length)
              + ")");
    }
  }

  /**
   * The file opened with {@code O_DIRECT}, when direct reads are on and the file system takes it;
   * else null (tmpfs before Linux 6.6, some FUSE file systems). Opened with the file, so that a
   * daemon's descriptors do not change under load.
   */
  private static FileChannel openDirect(Path path) {
    try {
      return FileChannel.open(
          path, StandardOpenOption.READ, com.sun.nio.file.ExtendedOpenOption.DIRECT);
    } catch (IOException | UnsupportedOperationException e) {
      return null;
    }
  }

  /** Closes the direct descriptors; the caller holds {@code fdLock}'s write lock. */
  void closeDescriptor() {
    if (directFd >= 0) {
      Posix.close(directFd);
      directFd = -1;
    }
  }

  /** Closes the direct channel, after {@link #closeDescriptor}. */
  void closeChannel() throws IOException {
    if (directChannel != null) {
      directChannel.close();
    }
  }
}
