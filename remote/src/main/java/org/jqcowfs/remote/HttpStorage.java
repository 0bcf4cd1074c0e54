package org.jqcowfs.remote;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.URI;
import java.net.http.HttpTimeoutException;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
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
public final class HttpStorage extends RangedStorage {
  private static final Logger LOG = LoggerFactory.getLogger(HttpStorage.class);

  /** Redirects followed at open. */
  private static final int MAX_REDIRECTS = 5;

  private final HttpLocation location;
  private final HttpTransport transport;
  private final RemoteOptions options;
  private final URI target;
  private final String validatorHeader;
  private final String validator;

  private HttpStorage(
      HttpLocation location,
      HttpTransport transport,
      RemoteOptions options,
      RemoteStats stats,
      URI target,
      long length,
      String validatorHeader,
      String validator)
      throws IOException {
    super(
        location,
        length,
        options,
        stats,
        validator == null
            ? null
            : target + "\n" + validatorHeader + " " + validator + "\n" + length);
    this.location = location;
    this.transport = transport;
    this.options = options;
    this.target = target;
    this.validatorHeader = validatorHeader;
    this.validator = validator;
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
      HttpLocation location, HttpTransport transport, RemoteOptions options, RemoteStats stats)
      throws IOException {
    URI target = location.uri();
    for (int hop = 0; ; hop++) {
      HttpTransport.Answer r =
          exchange(transport, target, Map.of("Range", "bytes=0-0"), 1, location, options, stats);
      int status = r.status();
      if (status == 301 || status == 302 || status == 303 || status == 307 || status == 308) {
        String to = r.location();
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
        total = totalOf(r.contentRange(), location);
        if (total != 0) {
          throw new IOException(location + ": HTTP 416 for bytes=0-0 of " + total + " bytes");
        }
      } else if (status == 206) {
        total = totalOf(r.contentRange(), location);
      } else {
        throw statusError(location, status);
      }
      String etag = r.etag();
      String modified = r.lastModified();
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
      return new HttpStorage(location, transport, options, stats, target, total, header, value);
    }
  }

  private static long totalOf(String contentRange, HttpLocation location) throws IOException {
    contentRange = contentRange == null ? "" : contentRange;
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

  /**
   * Sends a GET of {@code target} with {@code headers}, reading a 206 body of {@code bytes} bytes,
   * and sends it again after a timeout, a cut or oversized body, or a 5xx/408/429 answer, with
   * backoff, within the retries.
   *
   * @return the answer, whatever its status but those retried
   * @throws IOException once the retries are spent, naming the URL and the last failure
   */
  private static HttpTransport.Answer exchange(
      HttpTransport transport,
      URI target,
      Map<String, String> headers,
      int bytes,
      HttpLocation location,
      RemoteOptions options,
      RemoteStats stats)
      throws IOException {
    long deadline = System.nanoTime() + options.retryTime().toNanos();
    String last;
    for (int attempt = 1; ; attempt++) {
      stats.requests.increment();
      try {
        HttpTransport.Answer r = transport.get(target, headers, bytes);
        int status = r.status();
        if (status < 500 && status != 408 && status != 429) {
          return r;
        }
        last = "HTTP " + status;
      } catch (javax.net.ssl.SSLException e) { // a certificate does not get better
        throw new IOException(
            location
                + ": TLS failed: "
                + e.getMessage()
                + "; for a server whose CA the system does not trust, pass --ca-file PEM",
            e);
      } catch (InterruptedIOException e) {
        if (!(e instanceof java.net.SocketTimeoutException)) {
          throw new InterruptedIOException(location + ": interrupted");
        }
        last = e.getMessage();
      } catch (HttpTimeoutException e) {
        last = "no answer within " + options.timeout().toMillis() + " ms";
      } catch (IOException e) {
        last = e.getClass().getSimpleName() + (e.getMessage() != null ? ": " + e.getMessage() : "");
      }
      long backoff = Math.min(2_000, 100L << Math.min(attempt, 10));
      if (attempt >= options.attempts()
          || System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(backoff) > deadline) {
        throw new IOException(
            location
                + ": "
                + headers.getOrDefault("Range", "request")
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

  /** Fetches {@code bytes} bytes at {@code from} with one conditional range request. */
  @Override
  byte[] fetch(long from, int bytes) throws IOException {
    String range = "bytes=" + from + "-" + (from + bytes - 1);
    Map<String, String> headers =
        validatorHeader == null
            ? Map.of("Range", range)
            : Map.of("Range", range, validatorHeader, validator);
    HttpTransport.Answer r = exchange(transport, target, headers, bytes, location, options, stats);
    int status = r.status();
    if (status == 206) {
      String contentRange = r.contentRange();
      if (!answers(contentRange, from, bytes)) {
        throw new IOException(
            location + ": " + range + " answered with Content-Range '" + contentRange + "'");
      }
      return r.body();
    }
    if (status == 412) {
      throw changed(validatorHeader + " " + validator, "HTTP 412");
    }
    if (status == 200) {
      throw new IOException(location + ": the server ignored the Range header of " + range);
    }
    throw statusError(location, status);
  }
}
