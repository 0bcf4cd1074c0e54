package org.jqcowfs.remote;

import java.nio.file.Path;
import java.time.Duration;

/**
 * How remote images are read.
 *
 * @param cacheBytes bytes of fetched blocks kept in memory per opened object ({@code
 *     --cache-size}), at least one block
 * @param caFile a PEM file of CA certificates trusted besides the system's, or null
 * @param timeout the longest one request may take, headers and body, before it is retried
 * @param attempts requests made for one range before it fails (EIO), at least 1
 * @param retryTime the longest the retries of one range may take in all
 */
public record RemoteOptions(
    long cacheBytes, Path caFile, Duration timeout, int attempts, Duration retryTime) {

  /** 64 MiB of cache, the system's CAs, 30 s a request, 5 attempts within 60 s. */
  public static final RemoteOptions DEFAULT =
      new RemoteOptions(64L << 20, null, Duration.ofSeconds(30), 5, Duration.ofSeconds(60));

  public RemoteOptions {
    if (cacheBytes < HttpStorage.BLOCK_BYTES) {
      throw new IllegalArgumentException(
          "cache of "
              + cacheBytes
              + " bytes is smaller than one block ("
              + HttpStorage.BLOCK_BYTES
              + ")");
    }
    if (attempts < 1) {
      throw new IllegalArgumentException("attempts must be >= 1: " + attempts);
    }
  }

  /** These options with {@code bytes} of cache. */
  public RemoteOptions withCacheBytes(long bytes) {
    return new RemoteOptions(bytes, caFile, timeout, attempts, retryTime);
  }

  /** These options trusting the CA certificates in {@code pem} as well. */
  public RemoteOptions withCaFile(Path pem) {
    return new RemoteOptions(cacheBytes, pem, timeout, attempts, retryTime);
  }

  /** These options with another request timeout and retry budget (tests of faults). */
  public RemoteOptions withRetries(Duration timeout, int attempts, Duration retryTime) {
    return new RemoteOptions(cacheBytes, caFile, timeout, attempts, retryTime);
  }
}
