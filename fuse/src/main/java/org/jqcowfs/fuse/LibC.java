package org.jqcowfs.fuse;

import java.nio.ByteBuffer;
import jnr.ffi.LibraryLoader;
import jnr.ffi.Pointer;
import jnr.ffi.Runtime;
import jnr.ffi.annotations.In;
import jnr.ffi.annotations.Out;
import jnr.ffi.annotations.SaveError;
import jnr.ffi.byref.IntByReference;
import org.jqcowfs.io.Posix;

/**
 * The C library calls the FUSE transport needs, bound with jnr-ffi. Only what Java cannot do
 * itself: {@code /dev/fuse} I/O, the clone ioctl, mount(2), and passing a file descriptor over a
 * socket (the fusermount3 protocol), datagrams to a Unix socket (syslog, systemd's notify socket:
 * Java has no Unix datagram sockets), and open and close for those descriptors. Buffers passed here
 * are direct and used from position 0. (The qcow2 core's calls are bound apart, in {@link Posix},
 * so that commands that do not mount never generate this binding.)
 */
public interface LibC {
  /** The library, loaded once. */
  LibC INSTANCE = LibraryLoader.create(LibC.class).load("c");

  /** The jnr runtime of {@link #INSTANCE}, for errno and native memory. */
  Runtime RUNTIME = Runtime.getRuntime(INSTANCE);

  int O_RDWR = 02;
  int O_CLOEXEC = Posix.O_CLOEXEC;
  int AF_UNIX = 1;
  int SOCK_STREAM = 1;
  int SOCK_DGRAM = 2;
  int SOCK_CLOEXEC = 02000000;
  long MS_RDONLY = 1;
  long MS_NOSUID = 2;
  long MS_NODEV = 4;
  int MNT_DETACH = 2;
  int SOL_SOCKET = 1;
  int SCM_RIGHTS = 1;

  /** {@code _IOR(229, 0, uint32_t)}: attach a fresh /dev/fuse fd to an existing session. */
  long FUSE_DEV_IOC_CLONE = 0x8004E500L;

  @SaveError
  int open(String path, int flags);

  @SaveError
  int close(int fd);

  @SaveError
  long read(int fd, @Out ByteBuffer buf, long count);

  @SaveError
  long write(int fd, @In ByteBuffer buf, long count);

  /** {@code writev(2)}; {@code iov} holds {@code iovcnt} {@code struct iovec} (16 bytes each). */
  @SaveError
  long writev(int fd, @In ByteBuffer iov, int iovcnt);

  @SaveError
  int ioctl(int fd, long request, IntByReference arg);

  @SaveError
  int mount(String source, String target, String fstype, long flags, String data);

  @SaveError
  int umount2(String target, int flags);

  @SaveError
  int socketpair(int domain, int type, int protocol, @Out int[] sv);

  @SaveError
  int socket(int domain, int type, int protocol);

  /** {@code sendto(2)}; {@code addr} holds a {@code struct sockaddr} of {@code addrlen} bytes. */
  @SaveError
  long sendto(int fd, @In ByteBuffer buf, long len, int flags, @In ByteBuffer addr, int addrlen);

  @SaveError
  long recvmsg(int fd, Pointer msg, int flags);

  /** {@code sigaction(2)}; {@code act} may be null to only read {@code oldact}. */
  int sigaction(int signum, Pointer act, Pointer oldact);

  /** {@code signal(2)}; handler 0 is SIG_DFL. Returns the previous handler. */
  long signal(int signum, long handler);

  int getuid();

  int getgid();

  String strerror(int errnum);

  int posix_spawn_file_actions_init(Pointer actions);

  int posix_spawn_file_actions_adddup2(Pointer actions, int fd, int newfd);

  int posix_spawn_file_actions_addclosefrom_np(Pointer actions, int from);

  int posix_spawn_file_actions_destroy(Pointer actions);

  int posix_spawnp(
      @Out IntByReference pid,
      String file,
      Pointer actions,
      Pointer attr,
      Pointer argv,
      Pointer envp);

  @SaveError
  int waitpid(int pid, @Out IntByReference status, int options);

  @SaveError
  int dup2(int oldfd, int newfd);

  /** The calling thread's errno after the last {@link SaveError} call. */
  static int errno() {
    return RUNTIME.getLastError();
  }
}
