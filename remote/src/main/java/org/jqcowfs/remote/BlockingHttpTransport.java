package org.jqcowfs.remote;

import java.io.IOException;
import java.io.InputStream;
import java.net.HttpURLConnection;
import java.net.Proxy;
import java.net.SocketTimeoutException;
import java.net.URI;
import java.time.Duration;
import java.util.Map;

/**
 * GETs over plain HTTP/1.1 with the JDK's blocking {@link HttpURLConnection}: the body is read from
 * the socket straight into its array on the caller's thread, and the connection goes back to the
 * JDK's keep-alive cache once the body is read to its end. Measured on this 2-vCPU VM for the 3.2
 * GB OS image, 16 threads of 512 KiB ranges from nginx on loopback: 5.0-5.5 s of CPU against
 * 11.4-12.9 s for the {@code java.net.http} client (docs/performance.md). Any answer but a 206 is
 * not read: its connection is closed, so a server that ignores Range is never downloaded.
 */
final class BlockingHttpTransport implements HttpTransport {
  /**
   * Idle connections the JDK keeps per server (its default of 5 is below the readers in flight).
   */
  static final String KEEP_ALIVE = "64";

  private final int connectMillis;
  private final int readMillis;

  BlockingHttpTransport(Duration connectTimeout, Duration timeout) {
    if (System.getProperty("http.maxConnections") == null) {
      System.setProperty("http.maxConnections", KEEP_ALIVE); // read once, at the first use
    }
    this.connectMillis = (int) Math.min(Integer.MAX_VALUE, connectTimeout.toMillis());
    this.readMillis = (int) Math.min(Integer.MAX_VALUE, timeout.toMillis());
  }

  @Override
  public Answer get(URI target, Map<String, String> headers, int bytes) throws IOException {
    if (!target.getScheme().equals("http")) {
      throw new IllegalArgumentException("not an http:// URL: " + target);
    }
    // no proxy, as the java.net.http client: a URL is fetched from the server it names
    HttpURLConnection c = (HttpURLConnection) target.toURL().openConnection(Proxy.NO_PROXY);
    boolean reusable = false;
    try {
      c.setInstanceFollowRedirects(false);
      c.setUseCaches(false);
      c.setConnectTimeout(connectMillis);
      c.setReadTimeout(readMillis);
      headers.forEach(c::setRequestProperty);
      int status;
      try {
        status = c.getResponseCode();
      } catch (SocketTimeoutException e) {
        throw new SocketTimeoutException("no answer within " + readMillis + " ms");
      }
      byte[] body = null;
      if (status == 206) {
        long declared = c.getContentLengthLong();
        if (declared > bytes) {
          throw new IOException("the server sent more than the " + bytes + " bytes asked for");
        }
        body = new byte[bytes];
        try (InputStream in = c.getInputStream()) {
          int n = in.readNBytes(body, 0, bytes);
          if (n != bytes) {
            throw new IOException("the body ended after " + n + " of " + bytes + " bytes");
          }
          if (declared < 0 && in.read() != -1) { // chunked: nothing may follow
            throw new IOException("the server sent more than the " + bytes + " bytes asked for");
          }
          reusable = true; // read to its end: closing the stream keeps the connection
        } catch (SocketTimeoutException e) {
          throw new SocketTimeoutException("no answer within " + readMillis + " ms");
        }
      }
      return new Answer(
          status,
          c.getHeaderField("Location"),
          c.getHeaderField("Content-Range"),
          c.getHeaderField("ETag"),
          c.getHeaderField("Last-Modified"),
          body);
    } finally {
      if (!reusable) {
        c.disconnect(); // the body was not read: the connection goes, not back to the pool
      }
    }
  }
}
