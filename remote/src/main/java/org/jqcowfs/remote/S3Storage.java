package org.jqcowfs.remote;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.time.Instant;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import software.amazon.awssdk.core.exception.RetryableException;
import software.amazon.awssdk.core.exception.SdkClientException;
import software.amazon.awssdk.core.exception.SdkServiceException;
import software.amazon.awssdk.core.sync.ResponseTransformer;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.GetObjectRequest;
import software.amazon.awssdk.services.s3.model.GetObjectResponse;
import software.amazon.awssdk.services.s3.model.HeadObjectResponse;

/**
 * An object in S3-compatible storage, read with ranged {@code GetObject} requests (AWS SDK for Java
 * v2) and never written. {@code HeadObject} at open gives its length and validator; every later
 * request is conditional on it ({@code If-Match} with the ETag, else {@code If-Unmodified-Since}
 * with Last-Modified), so that an object replaced under a mount answers 412 and its uncached ranges
 * fail. Retries (timeouts, cut bodies, 5xx, throttling) are the SDK's standard strategy, bounded by
 * {@link RemoteOptions#attempts} and {@link RemoteOptions#retryTime}. A body is read up to the
 * bytes asked for, never sized by the server's Content-Length. Thread-safe.
 */
final class S3Storage extends RangedStorage {
  private static final Logger LOG = LoggerFactory.getLogger(S3Storage.class);

  private final S3Location location;
  private final S3Client s3;
  private final String etag;
  private final Instant lastModified;

  private S3Storage(
      S3Location location,
      S3Client s3,
      RemoteOptions options,
      RemoteStats stats,
      long length,
      String etag,
      Instant lastModified)
      throws IOException {
    super(
        location,
        length,
        options,
        stats,
        etag == null && lastModified == null
            ? null
            : S3Clients.endpoint(options)
                + "\n"
                + location
                + "\n"
                + etag
                + " "
                + lastModified
                + "\n"
                + length);
    this.location = location;
    this.s3 = s3;
    this.etag = etag;
    this.lastModified = lastModified;
  }

  /**
   * Opens the object at {@code location} with one {@code HeadObject}.
   *
   * @throws NoSuchFileException for 404 (no such bucket or key), naming the URL
   * @throws AccessDeniedException for 401/403, naming the URL and what to check
   * @throws IOException for missing credentials, an unusable length, or a server that cannot be
   *     reached within the retries; each message names the URL and what to do
   */
  static S3Storage open(S3Location location, S3Client s3, RemoteOptions options, RemoteStats stats)
      throws IOException {
    HeadObjectResponse head;
    try {
      head = s3.headObject(b -> b.bucket(location.bucket()).key(location.key()));
    } catch (SdkServiceException e) {
      throw statusError(location, e);
    } catch (SdkClientException e) {
      throw clientError(location, "HeadObject", e);
    }
    Long length = head.contentLength();
    if (length == null || length < 0) {
      throw new IOException(location + ": HeadObject gave no usable Content-Length; refused");
    }
    String etag = head.eTag();
    if (etag != null && (etag.startsWith("W/") || etag.isEmpty())) {
      etag = null; // a weak ETag never matches If-Match
    }
    if (etag == null && head.lastModified() == null) {
      LOG.warn("{}: no ETag and no Last-Modified: a replaced object goes unnoticed", location);
    }
    return new S3Storage(location, s3, options, stats, length, etag, head.lastModified());
  }

  /** Fetches {@code bytes} bytes at {@code from} with one conditional ranged GetObject. */
  @Override
  byte[] fetch(long from, int bytes) throws IOException {
    String range = "bytes=" + from + "-" + (from + bytes - 1);
    GetObjectRequest.Builder b =
        GetObjectRequest.builder().bucket(location.bucket()).key(location.key()).range(range);
    if (etag != null) {
      b.ifMatch(etag);
    }
    try {
      return s3.getObject(b.build(), bounded(range, from, bytes));
    } catch (Refused e) {
      throw e.error;
    } catch (SdkServiceException e) {
      if (e.statusCode() == 412) {
        throw changed("If-Match " + etag, "S3 412");
      }
      throw statusError(location, e);
    } catch (SdkClientException e) {
      if (e.getCause() instanceof Refused r) {
        throw r.error;
      }
      throw clientError(location, range, e);
    }
  }

  /** An answer not to retry, carried through the SDK (which retries an UncheckedIOException). */
  private static final class Refused extends RuntimeException {
    final IOException error;

    Refused(IOException error) {
      super(error.getMessage(), null, false, false);
      this.error = error;
    }
  }

  /**
   * Reads a 206 body of exactly {@code bytes} bytes for {@code range}; a cut body is retried (as
   * the SDK's own {@code toBytes()} does), a wrong Content-Range is not.
   */
  private ResponseTransformer<GetObjectResponse, byte[]> bounded(
      String range, long from, int bytes) {
    return (response, in) -> {
      String contentRange = response.contentRange();
      if (!answers(contentRange, from, bytes)) {
        in.abort();
        throw new Refused(
            new IOException(
                location
                    + ": "
                    + range
                    + (contentRange == null
                        ? " answered without Content-Range: the server ignored the range"
                        : " answered with Content-Range '" + contentRange + "'")));
      }
      if (!same(etag, response.eTag()) || !same(lastModified, response.lastModified())) {
        in.abort(); // a server that ignored If-Match, or an object without ETag that changed
        throw new Refused(
            changed(
                "ETag " + etag + ", Last-Modified " + lastModified,
                "ETag " + response.eTag() + ", Last-Modified " + response.lastModified()));
      }
      byte[] data;
      try {
        data = in.readNBytes(bytes);
      } catch (IOException e) {
        throw RetryableException.builder().message("body cut: " + e.getMessage()).cause(e).build();
      }
      if (data.length != bytes) {
        throw RetryableException.builder()
            .message("body cut after " + data.length + " of " + bytes + " bytes")
            .build();
      }
      return data;
    };
  }

  /** Whether an answer's validator is the pinned one (an absent one pinned matches anything). */
  private static boolean same(Object pinned, Object answered) {
    return pinned == null || pinned.equals(answered);
  }

  private static IOException statusError(S3Location location, SdkServiceException e) {
    int status = e.statusCode();
    String code =
        e instanceof software.amazon.awssdk.awscore.exception.AwsServiceException a
                && a.awsErrorDetails() != null
                && a.awsErrorDetails().errorCode() != null
            ? " " + a.awsErrorDetails().errorCode()
            : "";
    return switch (status) {
      case 404 ->
          new NoSuchFileException(
              location.toString(), null, "S3 404" + code + ": no such bucket or key");
      case 401, 403 ->
          new AccessDeniedException(
              location.toString(),
              null,
              "S3 "
                  + status
                  + code
                  + ": access refused; check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID),"
                  + " the bucket's policy, or --no-sign-request for a public bucket");
      default -> new IOException(location + ": S3 " + status + code);
    };
  }

  /** A failure on this side: no credentials, no region, retries spent; one line, naming the URL. */
  private static IOException clientError(S3Location location, String what, SdkClientException e) {
    String message = e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage();
    if (message.startsWith("Unable to load credentials")) {
      return new IOException(
          location
              + ": no AWS credentials found (environment, profile, container or instance role);"
              + " set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass"
              + " --no-sign-request for a public bucket");
    }
    return new IOException(location + ": " + what + " failed: " + firstLine(message), e);
  }

  private static String firstLine(String s) {
    int nl = s.indexOf('\n');
    return nl < 0 ? s : s.substring(0, nl);
  }
}
