package org.jqcowfs.remote;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A proxy on 127.0.0.1 in front of an origin server that breaks answers on request: each request
 * takes the next fault from the queue ({@link Fault#NONE} when it is empty), fetches the origin's
 * answer, and sends it broken that way. Every answer closes its connection. HTTP/1.1 only, for the
 * fault tests.
 */
final class FaultProxy implements AutoCloseable {
  enum Fault {
    /** The origin's answer as it is. */
    NONE,
    /** {@code 503 Service Unavailable} instead. */
    UNAVAILABLE,
    /** The answer's head and half its body, then the connection closed. */
    CUT_BODY,
    /** The whole object with {@code 200 OK}, as a server that ignores Range sends it. */
    IGNORE_RANGE,
    /** No answer at all: the connection stays open and silent until the proxy closes. */
    SILENCE,
    /** The connection closed before any answer. */
    CLOSE,
    /** The answer with 64 KiB more body than it should have, and a Content-Length saying so. */
    TOO_LONG
  }

  final ConcurrentLinkedQueue<Fault> faults = new ConcurrentLinkedQueue<>();
  final AtomicInteger requests = new AtomicInteger();
  private final ServerSocket server;
  private final int originPort;
  private final ConcurrentLinkedQueue<Socket> open = new ConcurrentLinkedQueue<>();

  FaultProxy(int originPort) throws IOException {
    this.originPort = originPort;
    this.server = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
    Thread t = new Thread(this::acceptLoop, "fault-proxy");
    t.setDaemon(true);
    t.start();
  }

  int port() {
    return server.getLocalPort();
  }

  String url(String path) {
    return "http://127.0.0.1:" + port() + "/" + path;
  }

  private void acceptLoop() {
    while (!server.isClosed()) {
      try {
        Socket s = server.accept();
        open.add(s);
        Thread t = new Thread(() -> serve(s), "fault-proxy-conn");
        t.setDaemon(true);
        t.start();
      } catch (IOException e) {
        return;
      }
    }
  }

  private void serve(Socket client) {
    try (client) {
      InputStream in = client.getInputStream();
      String head = readHead(in);
      if (head == null) {
        return;
      }
      requests.incrementAndGet();
      Fault fault = faults.poll();
      fault = fault == null ? Fault.NONE : fault;
      OutputStream out = client.getOutputStream();
      switch (fault) {
        case CLOSE -> {
          return;
        }
        case SILENCE -> {
          in.read(); // until the client or close() ends it
          return;
        }
        case UNAVAILABLE -> {
          out.write(
              "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                  .getBytes(StandardCharsets.US_ASCII));
          return;
        }
        default -> {}
      }
      String request = head;
      if (fault == Fault.IGNORE_RANGE) {
        request = head.replaceAll("(?im)^(Range|If-Match|If-Unmodified-Since):.*\r\n", "");
      }
      request = request.replaceAll("(?im)^Connection:.*\r\n", "");
      request = request.replace("\r\n\r\n", "\r\nConnection: close\r\n\r\n");
      byte[] answer;
      try (Socket origin = new Socket(InetAddress.getLoopbackAddress(), originPort)) {
        origin.getOutputStream().write(request.getBytes(StandardCharsets.ISO_8859_1));
        answer = origin.getInputStream().readAllBytes();
      }
      if (fault == Fault.CUT_BODY) {
        int bodyAt = indexOf(answer, "\r\n\r\n".getBytes(StandardCharsets.US_ASCII)) + 4;
        out.write(answer, 0, bodyAt + (answer.length - bodyAt) / 2);
      } else if (fault == Fault.TOO_LONG) {
        int bodyAt = indexOf(answer, "\r\n\r\n".getBytes(StandardCharsets.US_ASCII)) + 4;
        String answerHead = new String(answer, 0, bodyAt, StandardCharsets.ISO_8859_1);
        answerHead =
            answerHead.replaceAll(
                "(?im)^Content-Length:.*\r\n",
                "Content-Length: " + (answer.length - bodyAt + (64 << 10)) + "\r\n");
        out.write(answerHead.getBytes(StandardCharsets.ISO_8859_1));
        out.write(answer, bodyAt, answer.length - bodyAt);
        out.write(new byte[64 << 10]);
      } else {
        out.write(answer);
      }
      out.flush();
    } catch (IOException e) {
      // the client went away
    }
  }

  /** The request's head up to and with its blank line, or null at end of stream. */
  private static String readHead(InputStream in) throws IOException {
    ByteArrayOutputStream b = new ByteArrayOutputStream();
    int c;
    while ((c = in.read()) >= 0) {
      b.write(c);
      String s = b.toString(StandardCharsets.ISO_8859_1);
      if (s.endsWith("\r\n\r\n")) {
        return s;
      }
    }
    return null;
  }

  private static int indexOf(byte[] a, byte[] pattern) {
    outer:
    for (int i = 0; i + pattern.length <= a.length; i++) {
      for (int j = 0; j < pattern.length; j++) {
        if (a[i + j] != pattern[j]) {
          continue outer;
        }
      }
      return i;
    }
    return -1;
  }

  @Override
  public void close() throws IOException {
    server.close();
    for (Socket s : open) {
      s.close();
    }
  }
}
