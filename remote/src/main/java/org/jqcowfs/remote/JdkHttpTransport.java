package org.jqcowfs.remote;

import java.io.IOException;
import java.io.InterruptedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/**
 * GETs through the JDK's {@code java.net.http} client: HTTP/2 where TLS negotiates it, else
 * HTTP/1.1, over its pool of kept-alive connections; bodies read by {@link RangeBody}.
 */
final class JdkHttpTransport implements HttpTransport {
  private final HttpClient client;
  private final Duration timeout;

  JdkHttpTransport(HttpClient client, Duration timeout) {
    this.client = client;
    this.timeout = timeout;
  }

  @Override
  public Answer get(URI target, Map<String, String> headers, int bytes) throws IOException {
    HttpRequest.Builder b = HttpRequest.newBuilder(target).timeout(timeout).GET();
    if (target.getScheme().equals("http")) {
      b.version(HttpClient.Version.HTTP_1_1); // no h2c upgrade dance on plain HTTP
    }
    headers.forEach(b::header);
    CompletableFuture<HttpResponse<byte[]>> f =
        client.sendAsync(b.build(), RangeBody.expecting(bytes));
    HttpResponse<byte[]> r;
    try {
      r = f.get(timeout.toMillis(), TimeUnit.MILLISECONDS);
    } catch (TimeoutException e) {
      f.cancel(true);
      throw new HttpTimeoutException("no answer within " + timeout.toMillis() + " ms");
    } catch (ExecutionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof IOException io) {
        throw io;
      }
      throw new IOException(cause);
    } catch (InterruptedException e) {
      f.cancel(true);
      Thread.currentThread().interrupt();
      throw new InterruptedIOException("interrupted");
    }
    return new Answer(
        r.statusCode(),
        r.headers().firstValue("Location").orElse(null),
        r.headers().firstValue("Content-Range").orElse(null),
        r.headers().firstValue("ETag").orElse(null),
        r.headers().firstValue("Last-Modified").orElse(null),
        r.body());
  }
}
