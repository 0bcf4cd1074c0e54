package org.jqcowfs.fuse.transport;

import static org.jqcowfs.io.NativeFunction.libc;

import com.kenai.jffi.Invoker;
import com.kenai.jffi.MemoryIO;
import com.kenai.jffi.Type;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import org.jqcowfs.io.NativeFunction;
import org.jqcowfs.io.Posix;

/**
 * The C library calls the FUSE transport and the daemon need, bound with jffi as {@link Posix}
 * binds the file calls (one binding style: {@link NativeFunction}). Only what Java cannot do
 * itself: {@code /dev/fuse} I/O, the clone ioctl, epoll, mount(2), passing a file descriptor over a
 * socket (the fusermount3 protocol) and posix_spawn (fusermount3, and the daemonizer). The calls
 * only the daemon makes are the cli's ({@code DaemonCalls}). Buffers passed here are direct and
 * used from position 0; native memory is a {@code long} address from {@link #MEMORY}. errno after a
 * call: {@link #errno()}.
 */
public final class LibC {
  public static final int O_RDWR = 02;
  public static final int O_CLOEXEC = Posix.O_CLOEXEC;
  public static final int AF_UNIX = 1;
  public static final int SOCK_STREAM = 1;
  public static final int SOCK_CLOEXEC = 02000000;
  public static final long MS_RDONLY = 1;
  public static final long MS_NOSUID = 2;
  public static final long MS_NODEV = 4;
  public static final int MNT_DETACH = 2;
  public static final int SOL_SOCKET = 1;
  public static final int SCM_RIGHTS = 1;
  public static final int O_NONBLOCK = 04000;
  public static final int EPOLL_CLOEXEC = O_CLOEXEC;
  public static final int EPOLL_CTL_ADD = 1;
  public static final int EPOLL_CTL_DEL = 2;
  public static final int EPOLL_CTL_MOD = 3;
  public static final int EPOLLIN = 1;
  public static final int EPOLLONESHOT = 1 << 30;

  /** {@code sizeof(struct epoll_event)}: 12 on x86_64 (packed), 16 elsewhere; 16 covers both. */
  public static final int EPOLL_EVENT_BYTES = 16;

  /** {@code _IOR(229, 0, uint32_t)}: attach a fresh /dev/fuse fd to an existing session. */
  public static final long FUSE_DEV_IOC_CLONE = 0x8004E500L;

  /** Native memory for the calls' structures. */
  public static final MemoryIO MEMORY = MemoryIO.getInstance();

  private static final Invoker INVOKER = Invoker.getInstance();
  private static final Type INT = Type.SINT32;
  private static final Type LONG = Type.SINT64;
  private static final Type POINTER = Type.POINTER;

  private static final NativeFunction READ = libc("read", LONG, INT, POINTER, LONG);
  private static final NativeFunction WRITE = libc("write", LONG, INT, POINTER, LONG);
  private static final NativeFunction WRITEV = libc("writev", LONG, INT, POINTER, INT);
  private static final NativeFunction IOCTL = libc("ioctl", 2, INT, INT, LONG, POINTER);
  private static final NativeFunction MOUNT =
      libc("mount", INT, POINTER, POINTER, POINTER, LONG, POINTER);
  private static final NativeFunction UMOUNT2 = libc("umount2", INT, POINTER, INT);
  private static final NativeFunction SOCKETPAIR = libc("socketpair", INT, INT, INT, INT, POINTER);
  private static final NativeFunction RECVMSG = libc("recvmsg", LONG, INT, POINTER, INT);
  private static final NativeFunction GETUID = libc("getuid", INT);
  private static final NativeFunction GETGID = libc("getgid", INT);
  private static final NativeFunction STRERROR = libc("strerror", POINTER, INT);
  private static final NativeFunction SPAWN_ACTIONS_INIT =
      libc("posix_spawn_file_actions_init", INT, POINTER);
  private static final NativeFunction SPAWN_ACTIONS_ADDDUP2 =
      libc("posix_spawn_file_actions_adddup2", INT, POINTER, INT, INT);
  private static final NativeFunction SPAWN_ACTIONS_ADDCLOSEFROM =
      libc("posix_spawn_file_actions_addclosefrom_np", INT, POINTER, INT);
  private static final NativeFunction SPAWN_ACTIONS_DESTROY =
      libc("posix_spawn_file_actions_destroy", INT, POINTER);
  private static final NativeFunction POSIX_SPAWNP =
      libc("posix_spawnp", INT, POINTER, POINTER, POINTER, POINTER, POINTER, POINTER);
  private static final NativeFunction WAITPID = libc("waitpid", INT, INT, POINTER, INT);
  private static final NativeFunction EPOLL_CREATE1 = libc("epoll_create1", INT, INT);
  private static final NativeFunction EPOLL_CTL = libc("epoll_ctl", INT, INT, INT, INT, POINTER);
  private static final NativeFunction EPOLL_WAIT = libc("epoll_wait", INT, INT, POINTER, INT, INT);

  private LibC() {}

  /** The errno saved by the calling thread's last call (of this class or {@link Posix}). */
  public static int errno() {
    return Posix.errno();
  }

  /** {@code open(path, flags)}: a file descriptor, or -1. */
  public static int open(String path, int flags) {
    return Posix.open(path, flags);
  }

  /** {@code close(fd)}: 0, or -1. */
  public static int close(int fd) {
    return Posix.close(fd);
  }

  /** {@code read(fd, buf, count)} into the direct buffer {@code buf} from its index 0. */
  public static long read(int fd, ByteBuffer buf, long count) {
    return INVOKER.invokeN3(READ.context(), READ.address(), fd, address(buf), count);
  }

  /** {@code write(fd, buf, count)} from the direct buffer {@code buf} from its index 0. */
  public static long write(int fd, ByteBuffer buf, long count) {
    return INVOKER.invokeN3(WRITE.context(), WRITE.address(), fd, address(buf), count);
  }

  /**
   * {@code writev(2)}; {@code iov} (direct) holds {@code iovcnt} {@code struct iovec} of 16 bytes.
   */
  public static long writev(int fd, ByteBuffer iov, int iovcnt) {
    return INVOKER.invokeN3(WRITEV.context(), WRITEV.address(), fd, address(iov), iovcnt);
  }

  /** {@code epoll_create1(flags)}: an epoll file descriptor, or -1. */
  public static int epollCreate1(int flags) {
    return (int) INVOKER.invokeN1(EPOLL_CREATE1.context(), EPOLL_CREATE1.address(), flags);
  }

  /**
   * {@code epoll_ctl(epfd, op, fd, &event)} with {@code event.events = events} and {@code
   * event.data = 0}; {@code event} is a direct buffer of {@link #EPOLL_EVENT_BYTES}: 0, or -1.
   */
  public static int epollCtl(int epfd, int op, int fd, int events, ByteBuffer event) {
    long at = address(event);
    MEMORY.putInt(at, events);
    MEMORY.putLong(at + 4, 0); // data: unused (one descriptor per epoll set)
    return (int) INVOKER.invokeN4(EPOLL_CTL.context(), EPOLL_CTL.address(), epfd, op, fd, at);
  }

  /**
   * {@code epoll_wait(epfd, events, maxEvents, timeoutMillis)}; {@code events} is a direct buffer
   * of {@code maxEvents *} {@link #EPOLL_EVENT_BYTES}: the number of events, or -1.
   */
  public static int epollWait(int epfd, ByteBuffer events, int maxEvents, int timeoutMillis) {
    return (int)
        INVOKER.invokeN4(
            EPOLL_WAIT.context(),
            EPOLL_WAIT.address(),
            epfd,
            address(events),
            maxEvents,
            timeoutMillis);
  }

  /** {@code ioctl(fd, request, &value)} with a 4-byte integer argument. */
  public static int ioctlInt(int fd, long request, int value) {
    long arg = MEMORY.allocateMemory(4, true);
    try {
      MEMORY.putInt(arg, value);
      return (int) INVOKER.invokeN3(IOCTL.context(), IOCTL.address(), fd, request, arg);
    } finally {
      MEMORY.freeMemory(arg);
    }
  }

  /** {@code mount(source, target, fstype, flags, data)}: 0, or -1. */
  public static int mount(String source, String target, String fstype, long flags, String data) {
    long[] s = cStrings(source, target, fstype, data);
    try {
      return (int)
          INVOKER.invokeN5(MOUNT.context(), MOUNT.address(), s[0], s[1], s[2], flags, s[3]);
    } finally {
      free(s);
    }
  }

  /** {@code umount2(target, flags)}: 0, or -1. */
  public static int umount2(String target, int flags) {
    long[] s = cStrings(target);
    try {
      return (int) INVOKER.invokeN2(UMOUNT2.context(), UMOUNT2.address(), s[0], flags);
    } finally {
      free(s);
    }
  }

  /** {@code socketpair(domain, type, protocol, sv)}: 0 and the two fds in {@code sv}, or -1. */
  public static int socketpair(int domain, int type, int protocol, int[] sv) {
    long fds = MEMORY.allocateMemory(8, true);
    try {
      int r =
          (int)
              INVOKER.invokeN4(
                  SOCKETPAIR.context(), SOCKETPAIR.address(), domain, type, protocol, fds);
      sv[0] = MEMORY.getInt(fds);
      sv[1] = MEMORY.getInt(fds + 4);
      return r;
    } finally {
      MEMORY.freeMemory(fds);
    }
  }

  /** {@code recvmsg(fd, msg, flags)} with {@code msg} the address of a {@code struct msghdr}. */
  public static long recvmsg(int fd, long msg, int flags) {
    return INVOKER.invokeN3(RECVMSG.context(), RECVMSG.address(), fd, msg, flags);
  }

  public static int getuid() {
    return (int) INVOKER.invokeN0(GETUID.context(), GETUID.address());
  }

  public static int getgid() {
    return (int) INVOKER.invokeN0(GETGID.context(), GETGID.address());
  }

  /** {@code strerror(errnum)}: the message. */
  public static String strerror(int errnum) {
    long s = INVOKER.invokeN1(STRERROR.context(), STRERROR.address(), errnum);
    return s == 0
        ? "errno " + errnum
        : new String(MEMORY.getZeroTerminatedByteArray(s), StandardCharsets.UTF_8);
  }

  /**
   * {@code posix_spawnp} of {@code argv} with {@code envp}; in the child, descriptor {@code fds[i]}
   * becomes descriptor {@code i} (left alone where {@code fds[i]} is {@code i} or -1), and every
   * descriptor from {@code fds.length} on is closed.
   *
   * @return the child's pid, or {@code -errno} when it could not be spawned
   */
  public static int spawn(List<String> argv, List<String> envp, int[] fds) {
    long actions = MEMORY.allocateMemory(256, true); // posix_spawn_file_actions_t
    long pid = MEMORY.allocateMemory(8, true);
    long[] args = cStrings(argv.toArray(String[]::new));
    long[] env = cStrings(envp.toArray(String[]::new));
    long argvArray = pointerArray(args);
    long envpArray = pointerArray(env);
    INVOKER.invokeN1(SPAWN_ACTIONS_INIT.context(), SPAWN_ACTIONS_INIT.address(), actions);
    try {
      for (int i = 0; i < fds.length; i++) {
        if (fds[i] >= 0 && fds[i] != i) {
          INVOKER.invokeN3(
              SPAWN_ACTIONS_ADDDUP2.context(), SPAWN_ACTIONS_ADDDUP2.address(), actions, fds[i], i);
        }
      }
      INVOKER.invokeN2(
          SPAWN_ACTIONS_ADDCLOSEFROM.context(),
          SPAWN_ACTIONS_ADDCLOSEFROM.address(),
          actions,
          fds.length);
      int rc =
          (int)
              INVOKER.invokeN6(
                  POSIX_SPAWNP.context(),
                  POSIX_SPAWNP.address(),
                  pid,
                  args[0],
                  actions,
                  0,
                  argvArray,
                  envpArray);
      return rc != 0 ? -rc : MEMORY.getInt(pid);
    } finally {
      INVOKER.invokeN1(SPAWN_ACTIONS_DESTROY.context(), SPAWN_ACTIONS_DESTROY.address(), actions);
      MEMORY.freeMemory(actions);
      MEMORY.freeMemory(pid);
      MEMORY.freeMemory(argvArray);
      MEMORY.freeMemory(envpArray);
      free(args);
      free(env);
    }
  }

  /** {@code waitpid(pid, &status, options)}: the pid, or -1; the status is the wait status. */
  public static int waitpid(int pid, int[] status, int options) {
    long s = MEMORY.allocateMemory(4, true);
    try {
      int r = (int) INVOKER.invokeN3(WAITPID.context(), WAITPID.address(), pid, s, options);
      status[0] = MEMORY.getInt(s);
      return r;
    } finally {
      MEMORY.freeMemory(s);
    }
  }

  private static long address(ByteBuffer direct) {
    if (!direct.isDirect()) {
      throw new IllegalArgumentException("a native call needs a direct buffer");
    }
    return MEMORY.getDirectBufferAddress(direct);
  }

  /** NUL-terminated UTF-8 copies of {@code strings} in native memory (0 for null); free them. */
  private static long[] cStrings(String... strings) {
    long[] out = new long[strings.length];
    for (int i = 0; i < strings.length; i++) {
      if (strings[i] != null) {
        byte[] b = strings[i].getBytes(StandardCharsets.UTF_8);
        out[i] = MEMORY.allocateMemory(b.length + 1, true);
        MEMORY.putZeroTerminatedByteArray(out[i], b, 0, b.length);
      }
    }
    return out;
  }

  /** A NULL-terminated {@code char *[]} of {@code strings}' addresses; free it. */
  private static long pointerArray(long[] strings) {
    long array = MEMORY.allocateMemory((strings.length + 1) * 8L, true);
    for (int i = 0; i < strings.length; i++) {
      MEMORY.putAddress(array + 8L * i, strings[i]);
    }
    return array;
  }

  private static void free(long[] addresses) {
    for (long a : addresses) {
      if (a != 0) {
        MEMORY.freeMemory(a);
      }
    }
  }
}
