package org.jqcowfs.remote;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.nio.ByteBuffer;
import java.nio.channels.NonWritableChannelException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.jqcowfs.remote.BlockCache.Block;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A remote object of a length pinned at open, read with ranged requests and never written: what
 * {@link HttpStorage} and {@link S3Storage} share. Reads go through a {@link BlockCache} of {@link
 * #BLOCK_BYTES} blocks; the missing blocks of a read are fetched in runs of at most {@link
 * #PART_BYTES}, the first on the reader's thread and the others in parallel on a shared pool; with
 * {@link RemoteOptions#cacheDir}, blocks are also kept on disk ({@link DiskCache}) across opens.
 * Subclasses fetch one run ({@link #fetch}) conditional on the validator they pinned. Thread-safe;
 * no lock is held during a fetch.
 */
abstract class RangedStorage implements Storage {
  private static final Logger LOG = LoggerFactory.getLogger(RangedStorage.class);

  /** Bytes per cached block (and the smallest request): a qcow2 cluster at the default size. */
  static final int BLOCK_BYTES = 64 << 10;

  /** The most one request asks for; a longer missing run is fetched in parallel parts. */
  static final int PART_BYTES = 512 << 10;

  /** A Content-Range header of a 206 answer (RFC 9110 section 14.4): first, last, total. */
  static final Pattern CONTENT_RANGE = Pattern.compile("bytes (\\d+)-(\\d+)/(\\d+|\\*)");

  /** Whether {@code contentRange} answers exactly the {@code bytes} bytes at {@code from}. */
  static boolean answers(String contentRange, long from, int bytes) {
    Matcher m = CONTENT_RANGE.matcher(contentRange == null ? "" : contentRange);
    try {
      return m.matches()
          && Long.parseLong(m.group(1)) == from
          && Long.parseLong(m.group(2)) == from + bytes - 1;
    } catch (NumberFormatException e) { // more digits than a long: a server's garbage
      return false;
    }
  }

  /** Threads fetching the parts of a read besides the reader's own. */
  private static final ExecutorService FETCHERS =
      Executors.newCachedThreadPool(
          new ThreadFactory() {
            private final AtomicInteger n = new AtomicInteger();

            @Override
            public Thread newThread(Runnable r) {
              Thread t = new Thread(r, "jqcowfs-fetch-" + n.incrementAndGet());
              t.setDaemon(true);
              return t;
            }
          });

  private final Location location;
  private final long length;
  private final BlockCache cache;
  private final DiskCache disk; // or null

  /** Blocks being fetched, for reads that need them meanwhile: waited for, not fetched again. */
  private final ConcurrentHashMap<Long, CompletableFuture<Block>> inflight =
      new ConcurrentHashMap<>();

  /**
   * Blocks of the last bulk reads (which the block cache does not keep), at most {@link
   * #RECENT_BLOCKS}: the same range asked again soon after (a kernel READ whose read-ahead window
   * is gone, READs arriving out of order) is not fetched again. Holds the fetched arrays, no copy.
   */
  private final ConcurrentHashMap<Long, Block> recent = new ConcurrentHashMap<>();

  private final java.util.concurrent.ConcurrentLinkedQueue<Long> recentOrder =
      new java.util.concurrent.ConcurrentLinkedQueue<>();

  /** 16 MiB: twice the kernel read-ahead of a mount's flat file (8 MiB). */
  static final int RECENT_BLOCKS = 256;

  final RemoteStats stats;
  private final AtomicBoolean changeLogged = new AtomicBoolean();

  /**
   * @param identity what names this object's bytes for the on-disk cache (its URL, the validator
   *     pinned at open, its length), or null for none (no validator: a replaced object could not be
   *     told apart)
   * @throws IOException if the on-disk cache ({@link RemoteOptions#cacheDir}) cannot be opened
   */
  RangedStorage(
      Location location, long length, RemoteOptions options, RemoteStats stats, String identity)
      throws IOException {
    this.location = location;
    this.length = length;
    this.cache = new BlockCache(options.cacheBytes());
    this.stats = stats;
    this.disk =
        options.cacheDir() != null && identity != null
            ? DiskCache.open(options.cacheDir(), identity, BLOCK_BYTES)
            : null;
  }

  /**
   * Fetches {@code bytes} bytes at {@code from}, conditional on the validator pinned at open.
   *
   * @return exactly {@code bytes} bytes
   * @throws IOException after the retries, or at once when the object changed ({@link #changed})
   */
  abstract byte[] fetch(long from, int bytes) throws IOException;

  /**
   * The error for an object that no longer holds the validator pinned at open; logged once per
   * object, naming it.
   *
   * @param validator the pinned validator, as its request header and value
   * @param answer the server's answer, for the message ("HTTP 412")
   */
  final IOException changed(String validator, String answer) {
    if (changeLogged.compareAndSet(false, true)) { // parallel parts find it at once
      LOG.error(
          "{}: the object changed since it was opened ({} no longer holds): what is not cached"
              + " reads as EIO; mount it again to read the new object",
          location,
          validator);
    }
    return new IOException(location + ": the object changed since it was opened (" + answer + ")");
  }

  @Override
  public final Location location() {
    return location;
  }

  @Override
  public final long length() {
    return length;
  }

  /**
   * Reads exactly {@code dst.remaining()} bytes at {@code position}: cached blocks from the cache,
   * the others fetched (in parallel runs), then cached.
   *
   * @throws IOException if the range passes the end of the object, or a fetch fails after its
   *     retries (or the object changed), naming the location and the range
   */
  @Override
  public final void readFully(ByteBuffer dst, long position) throws IOException {
    int n = dst.remaining();
    if (position < 0 || position > length || n > length - position) {
      throw new IOException(
          location
              + ": read of "
              + n
              + " bytes at "
              + position
              + " passes the end ("
              + length
              + ")");
    }
    if (n == 0) {
      return;
    }
    long first = position / BLOCK_BYTES;
    long last = (position + n - 1) / BLOCK_BYTES;
    // A read of a part or more streams (convert, cp): its blocks are copied straight from the
    // fetched runs and not kept in memory, which would only churn the cache and the heap.
    boolean keep = n < PART_BYTES;
    Block[] sources = new Block[(int) (last - first + 1)];
    List<long[]> runs = new ArrayList<>(); // {first block, blocks}
    Map<Long, CompletableFuture<Block>> owned = new HashMap<>(); // blocks this read fetches
    Map<Long, CompletableFuture<Block>> awaited = new HashMap<>(); // blocks another read fetches
    int perPart = PART_BYTES / BLOCK_BYTES;
    for (long i = first; i <= last; i++) {
      Block b = cache.get(i);
      byte[] stored;
      if (b == null
          && (b = recent.get(i)) == null
          && disk != null
          && (stored = disk.get(i, blockBytes(i))) != null) {
        b = new Block(stored, 0, stored.length);
        if (keep) {
          cache.put(i, b);
        }
        stats.diskHitBytes.add(b.bytes());
      } else if (b != null) {
        stats.cacheHitBytes.add(b.bytes());
      }
      if (b != null) {
        sources[(int) (i - first)] = b;
        continue;
      }
      CompletableFuture<Block> mine = new CompletableFuture<>();
      CompletableFuture<Block> other = inflight.putIfAbsent(i, mine);
      if (other != null) { // concurrent reads of one block (a mount's threads) fetch it once
        awaited.put(i, other);
        continue;
      }
      owned.put(i, mine);
      if (!runs.isEmpty()
          && runs.get(runs.size() - 1)[0] + runs.get(runs.size() - 1)[1] == i
          && runs.get(runs.size() - 1)[1] < perPart) {
        runs.get(runs.size() - 1)[1]++;
      } else {
        runs.add(new long[] {i, 1});
      }
    }
    IOException failure = null;
    List<Future<byte[]>> others = new ArrayList<>();
    for (int k = 1; k < runs.size(); k++) {
      long[] run = runs.get(k);
      others.add(FETCHERS.submit(() -> fetchBlocks(run[0], (int) run[1])));
    }
    try {
      for (int k = 0; k < runs.size(); k++) {
        long[] run = runs.get(k);
        byte[] data = k == 0 ? fetchBlocks(run[0], (int) run[1]) : others.get(k - 1).get();
        for (int j = 0; j < run[1]; j++) {
          int from = j * BLOCK_BYTES;
          int bytes = Math.min(BLOCK_BYTES, data.length - from);
          long index = run[0] + j;
          if (disk != null) {
            disk.put(index, data, from, bytes);
          }
          Block block = new Block(data, from, bytes); // no copy, in the cache either
          if (keep) {
            cache.put(index, block);
          } else {
            remember(index, block);
          }
          sources[(int) (index - first)] = block;
          owned.get(index).complete(block);
        }
      }
      for (Map.Entry<Long, CompletableFuture<Block>> e : awaited.entrySet()) {
        sources[(int) (e.getKey() - first)] = e.getValue().get();
      }
    } catch (IOException e) {
      failure = e;
      throw e;
    } catch (ExecutionException e) {
      failure = e.getCause() instanceof IOException io ? io : new IOException(e.getCause());
      throw failure;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      failure = new InterruptedIOException(location + ": interrupted");
      throw failure;
    } finally {
      others.forEach(f -> f.cancel(true));
      IOException cause =
          failure != null ? failure : new IOException(location + ": the read fetching it failed");
      for (Map.Entry<Long, CompletableFuture<Block>> e : owned.entrySet()) {
        e.getValue().completeExceptionally(cause); // a no-op for the blocks fetched
        inflight.remove(e.getKey(), e.getValue());
      }
    }
    long pos = position;
    while (dst.hasRemaining()) {
      int k = (int) (pos / BLOCK_BYTES - first);
      int at = (int) (pos % BLOCK_BYTES);
      int take = Math.min(dst.remaining(), sources[k].bytes() - at);
      dst.put(sources[k].array(), sources[k].offset() + at, take);
      pos += take;
    }
  }

  /** Keeps {@code block} among the {@link #RECENT_BLOCKS} last bulk-read blocks. */
  private void remember(long index, Block block) {
    if (recent.put(index, block) == null) {
      recentOrder.add(index);
    }
    while (recent.size() > RECENT_BLOCKS) {
      Long oldest = recentOrder.poll();
      if (oldest == null) {
        break;
      }
      recent.remove(oldest);
    }
  }

  /** The bytes of block {@code i}: BLOCK_BYTES but for a short last block. */
  private int blockBytes(long i) {
    return (int) Math.min(BLOCK_BYTES, length - i * BLOCK_BYTES);
  }

  /** Fetches {@code count} blocks from block {@code first} (the last may be short). */
  private byte[] fetchBlocks(long first, int count) throws IOException {
    long from = first * BLOCK_BYTES;
    int bytes = (int) Math.min((long) count * BLOCK_BYTES, length - from);
    byte[] data = fetch(from, bytes);
    stats.bytesFetched.add(data.length);
    return data;
  }

  @Override
  public final int readUpTo(ByteBuffer dst, long position) throws IOException {
    if (position >= length) {
      return 0;
    }
    int n = (int) Math.min(dst.remaining(), length - position);
    readFully(dst.slice(dst.position(), n), position);
    dst.position(dst.position() + n);
    return n;
  }

  /** Refused: a remote image is never written. */
  @Override
  public final void write(ByteBuffer src, long position) {
    throw new NonWritableChannelException();
  }

  /** Nothing to flush: nothing is written. */
  @Override
  public final void flush() {}

  /** Refused: a remote image is never written. */
  @Override
  public final void punchHole(long position, long length) {
    throw new NonWritableChannelException();
  }

  /** Refused: a remote image is never written. */
  @Override
  public final void setLength(long bytes) {
    throw new NonWritableChannelException();
  }

  /** Closes the on-disk cache; the connections belong to the opener's client. */
  @Override
  public void close() throws IOException {
    if (disk != null) {
      disk.close();
    }
  }

  @Override
  public String toString() {
    return getClass().getSimpleName() + "(" + location + ", " + length + " bytes)";
  }
}
