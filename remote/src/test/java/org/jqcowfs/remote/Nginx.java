package org.jqcowfs.remote;

import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;

/**
 * A real nginx (Debian's nginx-light) serving a temp directory on 127.0.0.1, one process, stopped
 * by {@link #close}. Its access log has a line per request: the request line, the status, the body
 * bytes sent. {@code extra} is nginx configuration put in the server block (fault locations).
 */
final class Nginx implements AutoCloseable {
  final Path root;
  final int port;
  private final Path dir;
  private final Process process;

  private Nginx(Path dir, Path root, int port, Process process) {
    this.dir = dir;
    this.root = root;
    this.port = port;
    this.process = process;
  }

  static Nginx start(Path dir, String extra) throws IOException, InterruptedException {
    Path root = Files.createDirectories(dir.resolve("www"));
    int port = freePort();
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
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    while (true) {
      try (Socket s = new Socket()) {
        s.connect(new InetSocketAddress("127.0.0.1", port), 200);
        break;
      } catch (IOException e) {
        if (!p.isAlive() || System.nanoTime() > deadline) {
          p.destroyForcibly();
          throw new IOException(
              "nginx did not start: " + Files.readString(dir.resolve("nginx.out")), e);
        }
        Thread.sleep(20);
      }
    }
    return new Nginx(dir, root, port, p);
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
  String url(String path) {
    return "http://127.0.0.1:" + port + "/" + path;
  }

  /** The access log's lines so far. */
  List<String> accessLog() throws IOException {
    Path log = dir.resolve("access.log");
    return Files.exists(log) ? Files.readAllLines(log) : List.of();
  }

  @Override
  public void close() throws InterruptedException {
    process.destroy();
    if (!process.waitFor(10, TimeUnit.SECONDS)) {
      process.destroyForcibly().waitFor();
    }
  }
}
