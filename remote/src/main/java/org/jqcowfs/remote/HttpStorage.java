package org.jqcowfs.remote;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.channels.NonWritableChannelException;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * An object on an HTTP(S) server, read with range requests (RFC 9110 section 14) and never written.
 * Its length and validator are learnt once at open, with a {@code Range: bytes=0-0} request that
 * also proves the server honours ranges; every later request is conditional on that validator (a
 * strong ETag with {@code If-Match}, else {@code If-Unmodified-Since} with Last-Modified), so that
 * an object replaced under a mount answers 412 and its uncached ranges fail, never mixing old and
 * new bytes. Reads go through a {@link BlockCache} of {@link #BLOCK_BYTES} blocks; the missing
 * blocks of a read are fetched in runs of at most {@link #PART_BYTES}, in parallel when there are
 * several. A request that times out, is cut, or is answered 5xx, 408 or 429 is sent again with
 * backoff, within {@link RemoteOptions#attempts} and {@link RemoteOptions#retryTime}; then the read
 * fails (EIO for that range). Redirects are followed at open only within the same origin and
 * directory. Thread-safe; no lock is held during a request.
 */
public final class HttpStorage implements Storage {
  private static final Logger LOG = LoggerFactory.getLogger(HttpStorage.class);

  /** Bytes per cached block (and the smallest request): a qcow2 cluster at the default size. */
  static final int BLOCK_BYTES = 64 << 10;

  /** The most one request asks for; a longer missing run is fetched in parallel parts. */
  static final int PART_BYTES = 512 << 10;

  /** Redirects followed at open. */
  private static final int MAX_REDIRECTS = 5;

  private static final Pattern CONTENT_RANGE = Pattern.compile("bytes (\\d+)-(\\d+)/(\\d+|\\*)");

  /** Threads fetching the parts of a read besides the reader's own. */
  private static final ExecutorService FETCHERS =
      Executors.newCachedThreadPool(
          new java.util.concurrent.ThreadFactory() {
            private final AtomicInteger n = new AtomicInteger();

            @Override
            public Thread newThread(Runnable r) {
              Thread t = new Thread(r, "jqcowfs-http-" + n.incrementAndGet());
              t.setDaemon(true);
              return t;
            }
          });

  private final HttpLocation location;
  private final HttpClient client;
  private final RemoteOptions options;
  private final RemoteStats stats;
  private final URI target;
  private final long length;
  private final String validatorHeader;
  private final String validator;
  private final BlockCache cache;
  private volatile boolean changeLogged;

  private HttpStorage(
      HttpLocation location,
      HttpClient client,
      RemoteOptions options,
      RemoteStats stats,
      URI target,
      long length,
      String validatorHeader,
      String validator) {
    this.location = location;
    this.client = client;
    this.options = options;
    this.stats = stats;
    this.target = target;
    this.length = length;
    this.validatorHeader = validatorHeader;
    this.validator = validator;
    this.cache = new BlockCache(options.cacheBytes());
  }

  /**
   * Opens the object at {@code location}: one {@code Range: bytes=0-0} request (following redirects
   * within its origin and directory) for its length, validator and range support.
   *
   * @throws NoSuchFileException for 404 or 410, naming the URL
   * @throws AccessDeniedException for 401 or 403, naming the URL
   * @throws IOException if the server ignores ranges, gives no length, redirects elsewhere, or
   *     cannot be reached within the retries; each message names the URL and what to do
   */
  static HttpStorage open(
      HttpLocation location, HttpClient client, RemoteOptions options, RemoteStats stats)
      throws IOException {
    URI target = location.uri();
    for (int hop = 0; ; hop++) {
      HttpRequest probe = request(target, options).header("Range", "bytes=0-0").build();
      HttpResponse<byte[]> r = exchange(client, probe, 1, location, options, stats);
      int status = r.statusCode();
      if (status == 301 || status == 302 || status == 303 || status == 307 || status == 308) {
        String to = r.headers().firstValue("Location").orElse(null);
        if (to == null || hop >= MAX_REDIRECTS) {
          throw new IOException(location + ": HTTP " + status + " without a usable redirect");
        }
        HttpLocation nextLocation;
        try {
          nextLocation = HttpLocation.of(target.resolve(to).toString());
        } catch (IllegalArgumentException e) {
          throw new IOException(
              location + ": redirected (HTTP " + status + ") to a URL refused: " + e.getMessage());
        }
        if (!nextLocation.sameOrigin(location) || !nextLocation.isInside(location.directory())) {
          throw new IOException(
              location
                  + ": redirected (HTTP "
                  + status
                  + ") to "
                  + nextLocation
                  + ", outside its origin and directory; refused");
        }
        target = nextLocation.uri();
        continue;
      }
      if (status == 200) {
        throw new IOException(
            location
                + ": the server ignores Range requests (HTTP 200 for bytes=0-0); refused: every"
                + " read would download the whole file");
      }
      long total;
      if (status == 416) { // an empty object: "bytes */0"
        total = totalOf(r.headers().firstValue("Content-Range").orElse(""), location);
        if (total != 0) {
          throw new IOException(location + ": HTTP 416 for bytes=0-0 of " + total + " bytes");
        }
      } else if (status == 206) {
        total = totalOf(r.headers().firstValue("Content-Range").orElse(""), location);
      } else {
        throw statusError(location, status);
      }
      String etag = r.headers().firstValue("ETag").orElse(null);
      String modified = r.headers().firstValue("Last-Modified").orElse(null);
      String header = null;
      String value = null;
      if (etag != null && !etag.startsWith("W/")) {
        header = "If-Match";
        value = etag;
      } else if (modified != null) {
        header = "If-Unmodified-Since"; // a weak ETag never matches If-Match (RFC 9110 13.1.1)
        value = modified;
      } else {
        LOG.warn(
            "{}: no strong ETag and no Last-Modified: a replaced object goes unnoticed", location);
      }
      return new HttpStorage(location, client, options, stats, target, total, header, value);
    }
  }

  private static long totalOf(String contentRange, HttpLocation location) throws IOException {
    Matcher m = CONTENT_RANGE.matcher(contentRange);
    String total = null;
    if (m.matches()) {
      total = m.group(3);
    } else if (contentRange.startsWith("bytes */")) {
      total = contentRange.substring("bytes */".length());
    }
    if (total == null || total.equals("*") || total.length() > 18) {
      throw new IOException(
          location + ": no usable length in Content-Range '" + contentRange + "'; refused");
    }
    return Long.parseLong(total);
  }

  private static HttpRequest.Builder request(URI target, RemoteOptions options) {
    HttpRequest.Builder b = HttpRequest.newBuilder(target).timeout(options.timeout()).GET();
    if (target.getScheme().equals("http")) {
      b.version(HttpClient.Version.HTTP_1_1); // no h2c upgrade dance on plain HTTP
    }
    return b;
  }

  /**
   * Sends {@code request}, reading a 206 body of {@code bytes} bytes, and sends it again after a
   * timeout, a cut or oversized body, or a 5xx/408/429 answer, with backoff, within the retries.
   *
   * @return the answer, whatever its status but those retried
   * @throws IOException once the retries are spent, naming the URL and the last failure
   */
  private static HttpResponse<byte[]> exchange(
      HttpClient client,
      HttpRequest request,
      int bytes,
      HttpLocation location,
      RemoteOptions options,
      RemoteStats stats)
      throws IOException {
    long deadline = System.nanoTime() + options.retryTime().toNanos();
    String last;
    for (int attempt = 1; ; attempt++) {
      stats.requests.increment();
      CompletableFuture<HttpResponse<byte[]>> f =
          client.sendAsync(request, RangeBody.expecting(bytes));
      try {
        HttpResponse<byte[]> r = f.get(options.timeout().toMillis(), TimeUnit.MILLISECONDS);
        int status = r.statusCode();
        if (status < 500 && status != 408 && status != 429) {
          if (status == 206 && r.body() != null) {
            stats.bytesFetched.add(r.body().length);
          }
          return r;
        }
        last = "HTTP " + status;
      } catch (TimeoutException e) {
        f.cancel(true);
        last = "no answer within " + options.timeout().toMillis() + " ms";
      } catch (ExecutionException e) {
        Throwable cause = e.getCause();
        if (cause instanceof javax.net.ssl.SSLException) { // a certificate does not get better
          throw new IOException(
              location
                  + ": TLS failed: "
                  + cause.getMessage()
                  + "; for a server whose CA the system does not trust, pass --ca-file PEM",
              cause);
        }
        last =
            cause instanceof java.net.http.HttpTimeoutException
                ? "no answer within " + options.timeout().toMillis() + " ms"
                : cause.getClass().getSimpleName()
                    + (cause.getMessage() != null ? ": " + cause.getMessage() : "");
      } catch (InterruptedException e) {
        f.cancel(true);
        Thread.currentThread().interrupt();
        throw new InterruptedIOException(location + ": interrupted");
      }
      long backoff = Math.min(2_000, 100L << Math.min(attempt, 10));
      if (attempt >= options.attempts()
          || System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(backoff) > deadline) {
        throw new IOException(
            location
                + ": "
                + request.headers().firstValue("Range").orElse("request")
                + " failed after "
                + attempt
                + " attempts: "
                + last);
      }
      LOG.debug("{}: {} (attempt {}), trying again in {} ms", location, last, attempt, backoff);
      stats.retries.increment();
      try {
        Thread.sleep(backoff);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new InterruptedIOException(location + ": interrupted");
      }
    }
  }

  private static IOException statusError(HttpLocation location, int status) {
    return switch (status) {
      case 404, 410 ->
          new NoSuchFileException(location.toString(), null, "HTTP " + status + " Not Found");
      case 401, 403 ->
          new AccessDeniedException(
              location.toString(),
              null,
              "HTTP " + status + ": the server refuses access; check the URL and its permissions");
      default -> new IOException(location + ": HTTP " + status);
    };
  }

  @Override
  public Location location() {
    return location;
  }

  @Override
  public long length() {
    return length;
  }

  /**
   * Reads exactly {@code dst.remaining()} bytes at {@code position}: cached blocks from the cache,
   * the others fetched (in parallel runs), then cached.
   *
   * @throws IOException if the range passes the end of the object, or a fetch fails after its
   *     retries (the object changed: HTTP 412), naming the URL and the range
   */
  @Override
  public void readFully(ByteBuffer dst, long position) throws IOException {
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
    Map<Long, byte[]> blocks = new HashMap<>();
    List<long[]> runs = new ArrayList<>(); // {first block, blocks}
    int perPart = PART_BYTES / BLOCK_BYTES;
    for (long i = first; i <= last; i++) {
      byte[] b = cache.get(i);
      if (b != null) {
        blocks.put(i, b);
        stats.cacheHitBytes.add(b.length);
      } else if (!runs.isEmpty()
          && runs.get(runs.size() - 1)[0] + runs.get(runs.size() - 1)[1] == i
          && runs.get(runs.size() - 1)[1] < perPart) {
        runs.get(runs.size() - 1)[1]++;
      } else {
        runs.add(new long[] {i, 1});
      }
    }
    List<Future<byte[]>> others = new ArrayList<>();
    for (int k = 1; k < runs.size(); k++) {
      long[] run = runs.get(k);
      others.add(FETCHERS.submit(() -> fetchBlocks(run[0], (int) run[1])));
    }
    try {
      if (!runs.isEmpty()) {
        split(runs.get(0), fetchBlocks(runs.get(0)[0], (int) runs.get(0)[1]), blocks);
      }
      for (int k = 1; k < runs.size(); k++) {
        split(runs.get(k), others.get(k - 1).get(), blocks);
      }
    } catch (ExecutionException e) {
      throw e.getCause() instanceof IOException io ? io : new IOException(e.getCause());
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new InterruptedIOException(location + ": interrupted");
    } finally {
      others.forEach(f -> f.cancel(true));
    }
    long pos = position;
    while (dst.hasRemaining()) {
      long index = pos / BLOCK_BYTES;
      byte[] b = blocks.get(index);
      int at = (int) (pos - index * BLOCK_BYTES);
      int take = Math.min(dst.remaining(), b.length - at);
      dst.put(b, at, take);
      pos += take;
    }
  }

  /** Cuts a run's bytes into its blocks, caching each. */
  private void split(long[] run, byte[] data, Map<Long, byte[]> blocks) {
    for (int k = 0; k < run[1]; k++) {
      int from = k * BLOCK_BYTES;
      byte[] b =
          java.util.Arrays.copyOfRange(data, from, Math.min(data.length, from + BLOCK_BYTES));
      cache.put(run[0] + k, b);
      blocks.put(run[0] + k, b);
    }
  }

  /** Fetches {@code count} blocks from block {@code first} (the last may be short). */
  private byte[] fetchBlocks(long first, int count) throws IOException {
    long from = first * BLOCK_BYTES;
    int bytes = (int) Math.min((long) count * BLOCK_BYTES, length - from);
    String range = "bytes=" + from + "-" + (from + bytes - 1);
    HttpRequest.Builder b = request(target, options).header("Range", range);
    if (validatorHeader != null) {
      b.header(validatorHeader, validator);
    }
    HttpResponse<byte[]> r = exchange(client, b.build(), bytes, location, options, stats);
    int status = r.statusCode();
    if (status == 206) {
      String contentRange = r.headers().firstValue("Content-Range").orElse("");
      Matcher m = CONTENT_RANGE.matcher(contentRange);
      if (!m.matches()
          || Long.parseLong(m.group(1)) != from
          || Long.parseLong(m.group(2)) != from + bytes - 1) {
        throw new IOException(
            location + ": " + range + " answered with Content-Range '" + contentRange + "'");
      }
      return r.body();
    }
    if (status == 412) {
      if (!changeLogged) {
        changeLogged = true;
        LOG.error(
            "{}: the object changed since it was opened ({} {} no longer holds): what is not"
                + " cached reads as EIO; mount it again to read the new object",
            location,
            validatorHeader,
            validator);
      }
      throw new IOException(location + ": the object changed since it was opened (HTTP 412)");
    }
    if (status == 200) {
      throw new IOException(location + ": the server ignored the Range header of " + range);
    }
    throw statusError(location, status);
  }

  @Override
  public int readUpTo(ByteBuffer dst, long position) throws IOException {
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
  public void write(ByteBuffer src, long position) {
    throw new NonWritableChannelException();
  }

  /** Nothing to flush: nothing is written. */
  @Override
  public void flush() {}

  /** Refused: a remote image is never written. */
  @Override
  public void punchHole(long position, long length) {
    throw new NonWritableChannelException();
  }

  /** Refused: a remote image is never written. */
  @Override
  public void setLength(long bytes) {
    throw new NonWritableChannelException();
  }

  /** Nothing to close: the connections belong to the opener's client. */
  @Override
  public void close() {}

  @Override
  public String toString() {
    return "HttpStorage(" + location + ", " + length + " bytes)";
  }
}
