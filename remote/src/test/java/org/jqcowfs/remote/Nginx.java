package org.jqcowfs.remote;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A real nginx (Debian's nginx-light) serving a temp directory on 127.0.0.1, one process, stopped
 * by {@link #close}. Its access log has a line per request: the request line, the status, the body
 * bytes sent. {@code extra} is nginx configuration put in the server block (fault locations).
 */
public final class Nginx implements AutoCloseable {
  public final Path root;
  public final int port;

  /** The HTTPS port (HTTP/2 offered), or -1 when started without TLS. */
  final int tlsPort;

  /** The test CA's certificate (PEM) that signed the server's, or null without TLS. */
  final Path caFile;

  private final Path dir;
  private final Process process;

  private Nginx(Path dir, Path root, int port, int tlsPort, Path caFile, Process process) {
    this.dir = dir;
    this.root = root;
    this.port = port;
    this.tlsPort = tlsPort;
    this.caFile = caFile;
    this.process = process;
  }

  public static Nginx start(Path dir, String extra) throws IOException, InterruptedException {
    return start(dir, extra, false);
  }

  /**
   * As {@link #start(Path, String)}; with {@code tls}, also HTTPS (and HTTP/2) on {@link #tlsPort}
   * with a certificate for 127.0.0.1 signed by a CA made now ({@link #caFile}).
   */
  public static Nginx start(Path dir, String extra, boolean tls)
      throws IOException, InterruptedException {
    Path root = Files.createDirectories(dir.resolve("www"));
    int port = freePort();
    int tlsPort = tls ? freePort() : -1;
    String tlsServer = "";
    if (tls) {
      certificates(dir);
      tlsServer =
          String.join(
              "\n",
              "  server {",
              "    listen 127.0.0.1:" + tlsPort + " ssl http2;",
              "    ssl_certificate " + dir.resolve("server.pem") + ";",
              "    ssl_certificate_key " + dir.resolve("server.key") + ";",
              "    root " + root + ";",
              "  }");
    }
    Path conf = dir.resolve("nginx.conf");
    Files.writeString(
        conf,
        String.join(
            "\n",
            "daemon off;",
            "master_process off;",
            "worker_processes 1;",
            "pid " + dir.resolve("nginx.pid") + ";",
            "error_log " + dir.resolve("error.log") + " info;",
            "events { worker_connections 256; }",
            "http {",
            "  log_format bytes '$request $status $body_bytes_sent';",
            "  access_log " + dir.resolve("access.log") + " bytes;",
            "  client_body_temp_path " + dir.resolve("tmp") + ";",
            "  proxy_temp_path " + dir.resolve("tmp") + ";",
            "  fastcgi_temp_path " + dir.resolve("tmp") + ";",
            "  uwsgi_temp_path " + dir.resolve("tmp") + ";",
            "  scgi_temp_path " + dir.resolve("tmp") + ";",
            "  types { application/octet-stream qcow2; }",
            "  server {",
            "    listen 127.0.0.1:" + port + ";",
            "    root " + root + ";",
            extra,
            "  }",
            tlsServer,
            "}",
            ""));
    Files.createDirectories(dir.resolve("tmp"));
    Process p =
        new ProcessBuilder(
                nginx(),
                "-p",
                dir.toString(),
                "-e",
                dir.resolve("error.log").toString(),
                "-c",
                conf.toString())
            .redirectErrorStream(true)
            .redirectOutput(dir.resolve("nginx.out").toFile())
            .start();
    awaitListening(p, port, Duration.ofSeconds(10), dir.resolve("nginx.out"), "nginx");
    return new Nginx(dir, root, port, tlsPort, tls ? dir.resolve("ca.pem") : null, p);
  }

  /**
   * Waits until {@code server} accepts connections on 127.0.0.1:{@code port}; if it exits or the
   * time passes, ends it and fails with its {@code log}.
   */
  static void awaitListening(Process server, int port, Duration within, Path log, String what)
      throws IOException, InterruptedException {
    long deadline = System.nanoTime() + within.toNanos();
    while (true) {
      try (Socket s = new Socket()) {
        s.connect(new InetSocketAddress("127.0.0.1", port), 200);
        return;
      } catch (IOException e) {
        if (!server.isAlive() || System.nanoTime() > deadline) {
          server.destroyForcibly();
          throw new IOException(what + " did not start: " + Files.readString(log), e);
        }
        Thread.sleep(20);
      }
    }
  }

  /** A CA, and a certificate for IP 127.0.0.1 it signed, made with openssl in {@code dir}. */
  private static void certificates(Path dir) throws IOException, InterruptedException {
    Files.writeString(dir.resolve("san.ext"), "subjectAltName=IP:127.0.0.1\n");
    String[][] steps = {
      {
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=jqcowfs test CA"
      },
      {
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1"
      },
      {
        "openssl",
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext"
      },
    };
    for (String[] step : steps) {
      Process p =
          new ProcessBuilder(step)
              .directory(dir.toFile())
              .redirectErrorStream(true)
              .redirectOutput(dir.resolve("openssl.out").toFile())
              .start();
      if (p.waitFor() != 0) {
        throw new IOException(
            String.join(" ", step) + " failed: " + Files.readString(dir.resolve("openssl.out")));
      }
    }
  }

  /** The HTTPS URL of {@code path} below the root. */
  String tlsUrl(String path) {
    return "https://127.0.0.1:" + tlsPort + "/" + path;
  }

  private static String nginx() {
    for (String c : List.of("/usr/sbin/nginx", "/usr/bin/nginx")) {
      if (Files.isExecutable(Path.of(c))) {
        return c;
      }
    }
    throw new IllegalStateException("nginx is not installed (make deps installs nginx-light)");
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  /** The URL of {@code path} below the root. */
  public String url(String path) {
    return "http://127.0.0.1:" + port + "/" + path;
  }

  /** The access log's lines so far. */
  public List<String> accessLog() throws IOException {
    Path log = dir.resolve("access.log");
    return Files.exists(log) ? Files.readAllLines(log) : List.of();
  }

  /**
   * The access log once no line has come for 300 ms: nginx logs a request after its reply is sent,
   * so a client can be done with a reply before its line is written.
   */
  public List<String> settledAccessLog() throws IOException, InterruptedException {
    List<String> log = accessLog();
    while (true) {
      Thread.sleep(300);
      List<String> now = accessLog();
      if (now.size() == log.size()) {
        return now;
      }
      log = now;
    }
  }

  @Override
  public void close() throws InterruptedException {
    process.destroy();
    if (!process.waitFor(10, TimeUnit.SECONDS)) {
      process.destroyForcibly().waitFor();
    }
  }
}
