import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.Arrays;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;

/**
 * A TCP proxy on 127.0.0.1 that adds a fixed delay to each direction of every connection, for
 * make bench-remote (this kernel has no sch_netem). Streaming: each chunk read is forwarded
 * DELAY_MS after it arrived, so a round trip costs 2 x DELAY_MS and bandwidth is not limited.
 *
 * <p>Run: java bench/DelayProxy.java LISTEN_PORT TARGET_PORT DELAY_MS (fractions allowed; prints
 * "ready").
 */
public final class DelayProxy {
  private static final byte[] END = new byte[0];

  private record Chunk(long dueNanos, byte[] bytes) {}

  public static void main(String[] args) throws IOException {
    int listen = Integer.parseInt(args[0]);
    int target = Integer.parseInt(args[1]);
    long delayNanos = (long) (Double.parseDouble(args[2]) * 1e6);
    InetAddress lo = InetAddress.getLoopbackAddress();
    try (ServerSocket server = new ServerSocket(listen, 256, lo)) {
      System.out.println("ready");
      System.out.flush();
      while (true) {
        Socket client = server.accept();
        Socket upstream = new Socket(lo, target);
        client.setTcpNoDelay(true);
        upstream.setTcpNoDelay(true);
        AtomicInteger ended = new AtomicInteger();
        pipe(client, upstream, delayNanos, ended);
        pipe(upstream, client, delayNanos, ended);
      }
    }
  }

  /**
   * Forwards what {@code from} sends to {@code to}, each chunk delayed; half-closes at the end, and
   * closes both sockets once both directions ended (or at once on an error).
   */
  private static void pipe(Socket from, Socket to, long delayNanos, AtomicInteger ended) {
    BlockingQueue<Chunk> queue = new LinkedBlockingQueue<>();
    Thread reader =
        new Thread(
            () -> {
              byte[] buf = new byte[256 << 10];
              try (InputStream in = from.getInputStream()) {
                int n;
                while ((n = in.read(buf)) > 0) {
                  queue.add(new Chunk(System.nanoTime() + delayNanos, Arrays.copyOf(buf, n)));
                }
              } catch (IOException e) {
                // the peer went away: end this direction
              }
              queue.add(new Chunk(System.nanoTime() + delayNanos, END));
            });
    Thread writer =
        new Thread(
            () -> {
              try {
                OutputStream out = to.getOutputStream();
                while (true) {
                  Chunk c = queue.take();
                  long wait = c.dueNanos() - System.nanoTime();
                  if (wait > 0) {
                    LockSupport.parkNanos(wait);
                    while (c.dueNanos() - System.nanoTime() > 0) {
                      LockSupport.parkNanos(c.dueNanos() - System.nanoTime());
                    }
                  }
                  if (c.bytes() == END) {
                    to.shutdownOutput();
                    if (ended.incrementAndGet() == 2) {
                      close(from, to);
                    }
                    return;
                  }
                  out.write(c.bytes());
                }
              } catch (IOException | InterruptedException e) {
                close(from, to); // the peer went away
              }
            });
    reader.setDaemon(true);
    writer.setDaemon(true);
    reader.start();
    writer.start();
  }

  private static void close(Socket a, Socket b) {
    try {
      a.close();
      b.close();
    } catch (IOException e) {
      // closing anyway
    }
  }
}
