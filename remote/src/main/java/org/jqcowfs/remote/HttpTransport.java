package org.jqcowfs.remote;

import java.io.IOException;
import java.net.URI;
import java.util.Map;

/**
 * How {@link HttpStorage} sends one GET: {@link JdkHttpTransport} (the JDK's {@code java.net.http}
 * client, HTTP/2 over TLS) or {@link BlockingHttpTransport} (a blocking HTTP/1.1 connection per
 * request, reused by the JDK's keep-alive cache; for plain {@code http://}, where it spends less
 * than half the CPU per byte). Neither follows redirects nor retries: {@link HttpStorage} does.
 */
interface HttpTransport {
  /**
   * One answer: its status, the response headers {@link HttpStorage} reads (null when absent), and
   * the body of a {@code 206 Partial Content} answer (null for every other status: not read).
   */
  record Answer(
      int status,
      String location,
      String contentRange,
      String etag,
      String lastModified,
      byte[] body) {}

  /**
   * Sends a GET of {@code target} with {@code headers} and reads a 206 body of exactly {@code
   * bytes} bytes.
   *
   * @throws javax.net.ssl.SSLException if TLS fails (not worth another attempt)
   * @throws java.io.InterruptedIOException if the thread is interrupted while waiting
   * @throws IOException if the connection fails, no answer comes within the timeout, or a 206 body
   *     is shorter or longer than {@code bytes} (each worth another attempt)
   */
  Answer get(URI target, Map<String, String> headers, int bytes) throws IOException;
}
