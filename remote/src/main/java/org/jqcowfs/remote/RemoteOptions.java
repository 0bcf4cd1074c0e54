package org.jqcowfs.remote;

import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;

/**
 * How remote images are read.
 *
 * @param cacheBytes bytes of fetched blocks kept in memory per opened object ({@code
 *     --remote-cache-size}), at least one block
 * @param caFile a PEM file of CA certificates trusted besides the system's, or null
 * @param timeout the longest one request may take, headers and body, before it is retried
 * @param attempts requests made for one range before it fails (EIO), at least 1
 * @param retryTime the longest the retries of one range may take in all
 * @param s3Endpoint the endpoint of an S3-compatible server ({@code --s3-endpoint}), or null for
 *     {@code AWS_ENDPOINT_URL_S3}, {@code AWS_ENDPOINT_URL}, else AWS's own endpoints
 * @param s3Unsigned whether S3 requests go unsigned (a public bucket, {@code --no-sign-request})
 * @param cacheDir a directory keeping fetched blocks across opens ({@code --cache-dir}), or null
 */
public record RemoteOptions(
    long cacheBytes,
    Path caFile,
    Duration timeout,
    int attempts,
    Duration retryTime,
    URI s3Endpoint,
    boolean s3Unsigned,
    Path cacheDir) {

  /** 64 MiB of cache, the system's CAs, 30 s a request, 5 attempts within 60 s, signed S3. */
  public static final RemoteOptions DEFAULT =
      new RemoteOptions(
          64L << 20, null, Duration.ofSeconds(30), 5, Duration.ofSeconds(60), null, false, null);

  public RemoteOptions {
    if (cacheBytes < RangedStorage.BLOCK_BYTES) {
      throw new IllegalArgumentException(
          "cache of "
              + cacheBytes
              + " bytes is smaller than one block ("
              + RangedStorage.BLOCK_BYTES
              + ")");
    }
    if (attempts < 1) {
      throw new IllegalArgumentException("attempts must be >= 1: " + attempts);
    }
    if (s3Endpoint != null
        && (s3Endpoint.getHost() == null
            || !(s3Endpoint.getScheme().equals("http")
                || s3Endpoint.getScheme().equals("https")))) {
      throw new IllegalArgumentException("S3 endpoint is not an http(s) URL with a host");
    }
  }

  /** These options with {@code bytes} of cache. */
  public RemoteOptions withCacheBytes(long bytes) {
    return new RemoteOptions(
        bytes, caFile, timeout, attempts, retryTime, s3Endpoint, s3Unsigned, cacheDir);
  }

  /** These options trusting the CA certificates in {@code pem} as well. */
  public RemoteOptions withCaFile(Path pem) {
    return new RemoteOptions(
        cacheBytes, pem, timeout, attempts, retryTime, s3Endpoint, s3Unsigned, cacheDir);
  }

  /** These options with another request timeout and retry budget (tests of faults). */
  public RemoteOptions withRetries(Duration timeout, int attempts, Duration retryTime) {
    return new RemoteOptions(
        cacheBytes, caFile, timeout, attempts, retryTime, s3Endpoint, s3Unsigned, cacheDir);
  }

  /**
   * These options reading S3 from {@code endpoint} (null: from the environment or AWS), signed or
   * not.
   */
  public RemoteOptions withS3(URI endpoint, boolean unsigned) {
    return new RemoteOptions(
        cacheBytes, caFile, timeout, attempts, retryTime, endpoint, unsigned, cacheDir);
  }

  /** These options keeping fetched blocks in {@code dir} across opens (null: in memory only). */
  public RemoteOptions withCacheDir(Path dir) {
    return new RemoteOptions(
        cacheBytes, caFile, timeout, attempts, retryTime, s3Endpoint, s3Unsigned, dir);
  }
}
