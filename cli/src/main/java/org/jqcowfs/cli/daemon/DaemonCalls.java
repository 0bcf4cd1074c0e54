package org.jqcowfs.cli.daemon;

import static org.jqcowfs.io.NativeFunction.libc;

import com.kenai.jffi.Invoker;
import com.kenai.jffi.MemoryIO;
import com.kenai.jffi.Type;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.fuse.transport.LibC;
import org.jqcowfs.io.NativeFunction;

/**
 * The C library calls only the daemon makes, bound as {@link LibC} binds the transport's (one
 * binding style: {@link NativeFunction}): datagrams to a Unix socket (syslog, systemd's notify
 * socket), signal dispositions, the pipe and descriptors of the daemonizer. errno after a call:
 * {@link LibC#errno()}.
 */
public final class DaemonCalls {
  public static final int AF_UNIX = 1;
  public static final int SOCK_DGRAM = 2;
  public static final int SOCK_CLOEXEC = 02000000;
  public static final int O_CLOEXEC = LibC.O_CLOEXEC;

  /** Native memory for the calls' structures. */
  public static final MemoryIO MEMORY = MemoryIO.getInstance();

  private static final Invoker INVOKER = Invoker.getInstance();
  private static final Type INT = Type.SINT32;
  private static final Type LONG = Type.SINT64;
  private static final Type POINTER = Type.POINTER;

  private static final NativeFunction SOCKET = libc("socket", INT, INT, INT, INT);
  private static final NativeFunction SENDTO =
      libc("sendto", LONG, INT, POINTER, LONG, INT, POINTER, INT);
  private static final NativeFunction SIGACTION = libc("sigaction", INT, INT, POINTER, POINTER);
  private static final NativeFunction SIGNAL = libc("signal", POINTER, INT, POINTER);
  private static final NativeFunction DUP2 = libc("dup2", INT, INT, INT);
  private static final NativeFunction PIPE2 = libc("pipe2", INT, POINTER, INT);

  private DaemonCalls() {}

  /** {@code socket(domain, type, protocol)}: a file descriptor, or -1. */
  public static int socket(int domain, int type, int protocol) {
    return (int) INVOKER.invokeN3(SOCKET.context(), SOCKET.address(), domain, type, protocol);
  }

  /** {@code sendto(2)} of the direct {@code buf}; {@code addr} (direct) holds a sockaddr. */
  public static long sendto(
      int fd, ByteBuffer buf, long len, int flags, ByteBuffer addr, int addrlen) {
    return INVOKER.invokeN6(
        SENDTO.context(), SENDTO.address(), fd, address(buf), len, flags, address(addr), addrlen);
  }

  /** {@code sigaction(signum, act, oldact)}, addresses (0 for NULL): 0, or -1. */
  public static int sigaction(int signum, long act, long oldact) {
    return (int) INVOKER.invokeN3(SIGACTION.context(), SIGACTION.address(), signum, act, oldact);
  }

  /** {@code signal(signum, handler)}; handler 0 is SIG_DFL. Returns the previous handler. */
  public static long signal(int signum, long handler) {
    return INVOKER.invokeN2(SIGNAL.context(), SIGNAL.address(), signum, handler);
  }

  /** This process's environment as {@code NAME=value} strings, for {@link #spawn}. */
  public static List<String> environment() {
    List<String> env = new java.util.ArrayList<>();
    System.getenv().forEach((k, v) -> env.add(k + "=" + v));
    return env;
  }

  /** {@code pipe2(fds, O_CLOEXEC)}: 0 with the read end in {@code fds[0]}, the write end in 1. */
  public static int pipe(int[] fds) {
    long mem = MEMORY.allocateMemory(8, true);
    try {
      int r = (int) INVOKER.invokeN2(PIPE2.context(), PIPE2.address(), mem, O_CLOEXEC);
      fds[0] = MEMORY.getInt(mem);
      fds[1] = MEMORY.getInt(mem + 4);
      return r;
    } finally {
      MEMORY.freeMemory(mem);
    }
  }

  /** {@code dup2(oldfd, newfd)}: {@code newfd}, or -1. */
  public static int dup2(int oldfd, int newfd) {
    return (int) INVOKER.invokeN2(DUP2.context(), DUP2.address(), oldfd, newfd);
  }

  private static long address(ByteBuffer direct) {
    if (!direct.isDirect()) {
      throw new IllegalArgumentException("a native call needs a direct buffer");
    }
    return MEMORY.getDirectBufferAddress(direct);
  }
}
