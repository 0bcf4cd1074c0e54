package org.jqcowfs.cli.daemon;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import org.jqcowfs.fuse.transport.LibC;

/**
 * Datagrams to a Unix socket (syslog's {@code /dev/log}, systemd's {@code $NOTIFY_SOCKET}), which
 * Java's own channels cannot send. A name starting with {@code @} is in the abstract namespace, as
 * systemd spells it. Thread-safe: each {@link #send} is one {@code sendto(2)}.
 */
final class UnixDatagram implements Closeable {
  /** {@code sizeof(sun_path)}. */
  private static final int SUN_PATH_BYTES = 108;

  private final String name;
  private final int fd;
  private final ByteBuffer address;
  private final int addressBytes;

  private UnixDatagram(String name, int fd, ByteBuffer address, int addressBytes) {
    this.name = name;
    this.fd = fd;
    this.address = address;
    this.addressBytes = addressBytes;
  }

  /**
   * A socket that sends to {@code name} (a path, or {@code @name} in the abstract namespace).
   *
   * @throws IOException if the name is too long or no socket can be made
   */
  static UnixDatagram to(String name) throws IOException {
    byte[] path = name.getBytes(StandardCharsets.UTF_8);
    boolean abstractName = name.startsWith("@");
    if (path.length >= SUN_PATH_BYTES || path.length == 0) {
      throw new IOException(name + ": not a Unix socket name (1 to 107 bytes)");
    }
    ByteBuffer a = ByteBuffer.allocateDirect(2 + SUN_PATH_BYTES).order(ByteOrder.nativeOrder());
    a.putShort(0, (short) DaemonCalls.AF_UNIX);
    a.put(2, path);
    if (abstractName) {
      a.put(2, (byte) 0);
    }
    int fd =
        DaemonCalls.socket(
            DaemonCalls.AF_UNIX, DaemonCalls.SOCK_DGRAM | DaemonCalls.SOCK_CLOEXEC, 0);
    if (fd < 0) {
      throw new IOException(name + ": socket: " + LibC.strerror(LibC.errno()));
    }
    return new UnixDatagram(name, fd, a, 2 + path.length + (abstractName ? 0 : 1));
  }

  /**
   * Sends {@code text} (UTF-8) as one datagram.
   *
   * @throws IOException if it cannot be sent (no listener, no room)
   */
  void send(String text) throws IOException {
    byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
    ByteBuffer b = ByteBuffer.allocateDirect(bytes.length).put(bytes).flip();
    if (DaemonCalls.sendto(fd, b, bytes.length, 0, address, addressBytes) < 0) {
      throw new IOException(name + ": " + LibC.strerror(LibC.errno()));
    }
  }

  @Override
  public void close() {
    LibC.close(fd);
  }
}
