package org.jqcowfs.fuse.transport;

import com.kenai.jffi.MemoryIO;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import org.jqcowfs.fuse.filesystem.MountOptions;
import org.jqcowfs.fuse.protocol.Errno;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A FUSE mount: the {@code /dev/fuse} fd the kernel sends requests on, got by mount(2) as root or
 * from fusermount3 otherwise (passed back over a socket with SCM_RIGHTS), with a watchdog process
 * that unmounts if this process dies. Also unmounting, and the mount table.
 */
public final class FuseMount {
  private static final Logger LOG = LoggerFactory.getLogger(FuseMount.class);

  /**
   * The watchdog of an unprivileged mount: it unmounts unless told "clean" before its stdin closes.
   * fusermount3's own auto_unmount (fuse3 3.14, Debian 12) cannot see a dead daemon's mount without
   * allow_other (libfuse issue #586), so a {@code kill -9} would leave it stale.
   */
  private static final String WATCHDOG =
      "read -r line; [ \"$line\" = clean ] || exec fusermount3 -u -z -- \"$1\"";

  private final Path mountpoint;
  private final int devFd;
  private final Process watchdog;

  private FuseMount(Path mountpoint, int devFd, Process watchdog) {
    this.mountpoint = mountpoint;
    this.devFd = devFd;
    this.watchdog = watchdog;
  }

  /** Whether this process runs as root (mount(2) and bdi readahead are then ours to use). */
  public static boolean privileged() {
    return LibC.getuid() == 0;
  }

  /**
   * Mounts a read-only FUSE filesystem on {@code mountpoint}.
   *
   * @throws IOException naming the mountpoint and the reason: not a directory, mount(2) or
   *     fusermount3 failed
   */
  public static FuseMount mount(Path mountpoint, MountOptions options) throws IOException {
    Path mnt = mountpoint.toAbsolutePath().normalize();
    if (!Files.isDirectory(mnt)) {
      throw new IOException(
          mnt + ": " + (Files.exists(mnt) ? "not a directory" : "no such directory"));
    }
    return privileged() ? mountAsRoot(mnt, options) : mountWithFusermount(mnt, options);
  }

  private static FuseMount mountAsRoot(Path mnt, MountOptions options) throws IOException {
    int fd = LibC.open("/dev/fuse", LibC.O_RDWR | LibC.O_CLOEXEC);
    if (fd < 0) {
      throw new IOException("/dev/fuse: " + LibC.strerror(LibC.errno()));
    }
    String data =
        "fd=%d,rootmode=40000,user_id=%d,group_id=%d,default_permissions%s"
            .formatted(
                fd, LibC.getuid(), LibC.getgid(), options.allowOther() ? ",allow_other" : "");
    long flags = (options.writable() ? 0 : LibC.MS_RDONLY) | LibC.MS_NOSUID | LibC.MS_NODEV;
    flags |= options.noexec() ? 8 : 0; // MS_NOEXEC
    flags |= options.noatime() ? 1024 : 0; // MS_NOATIME
    if (LibC.mount(options.fsname(), mnt.toString(), "fuse.jqcowfs", flags, data) != 0) {
      int err = LibC.errno();
      LibC.close(fd);
      throw new IOException(mnt + ": mount failed: " + LibC.strerror(err));
    }
    return new FuseMount(mnt, fd, null);
  }

  /**
   * The fusermount3 protocol (libfuse's {@code fuse_mount_fusermount}): fusermount3 gets one end of
   * a socketpair as fd 3 ({@code _FUSE_COMMFD}), mounts, sends the /dev/fuse fd back and exits.
   * Only that end is inherited. fusermount3's own auto_unmount is not asked for: without
   * allow_other it cannot see a dead daemon's mount (libfuse issue #586, fuse3 before 3.14.1), and
   * it prints "not mounted" after every clean unmount; {@link #WATCHDOG} does that job.
   */
  private static FuseMount mountWithFusermount(Path mnt, MountOptions options) throws IOException {
    // The watchdog starts first: a kill -9 just after fusermount3 mounts must not find none.
    Process watchdog = startWatchdog(mnt);
    try {
      return new FuseMount(mnt, fusermount(mnt, options), watchdog);
    } catch (IOException | RuntimeException e) {
      dismiss(watchdog); // nothing of ours is mounted there: it must not unmount
      throw e;
    }
  }

  /** Runs fusermount3 and returns the /dev/fuse fd it sends back. */
  private static int fusermount(Path mnt, MountOptions options) throws IOException {
    int[] sv = new int[2];
    if (LibC.socketpair(LibC.AF_UNIX, LibC.SOCK_STREAM | LibC.SOCK_CLOEXEC, 0, sv) != 0) {
      throw new IOException("socketpair: " + LibC.strerror(LibC.errno()));
    }
    int childFd = sv[1] == 3 ? 4 : 3;
    List<String> argv =
        List.of("fusermount3", "-o", options.fusermountOptions(), "--", mnt.toString());
    List<String> envp = new ArrayList<>();
    for (Map.Entry<String, String> e : System.getenv().entrySet()) {
      if (!e.getKey().equals("_FUSE_COMMFD")) {
        envp.add(e.getKey() + "=" + e.getValue());
      }
    }
    envp.add("_FUSE_COMMFD=" + childFd);
    int pid;
    try {
      pid = spawn(argv, envp, sv[1], childFd);
    } finally {
      LibC.close(sv[1]);
    }
    int fd;
    int[] status = new int[1];
    try {
      fd = receiveFd(sv[0]);
    } finally {
      LibC.close(sv[0]);
      LibC.waitpid(pid, status, 0);
    }
    if (fd < 0) {
      int code = (status[0] >> 8) & 0xff;
      throw new IOException(mnt + ": fusermount3 failed to mount (exit status " + code + ")");
    }
    return fd;
  }

  /** The {@link #WATCHDOG} for {@code mnt}, or null (with a warning) if it cannot start. */
  private static Process startWatchdog(Path mnt) {
    try {
      return new ProcessBuilder("sh", "-c", WATCHDOG, "jqcowfs-watchdog", mnt.toString())
          .redirectOutput(ProcessBuilder.Redirect.DISCARD)
          .redirectError(ProcessBuilder.Redirect.DISCARD)
          .start();
    } catch (IOException e) {
      LOG.warn(
          "{}: no unmount watchdog ({}); if this process is killed, run jqcowfs unmount",
          mnt,
          e.getMessage());
      return null;
    }
  }

  /** Tells a watchdog that all went well: it exits without unmounting. */
  private static void dismiss(Process watchdog) {
    if (watchdog != null) {
      try (var stdin = watchdog.getOutputStream()) {
        stdin.write("clean\n".getBytes(StandardCharsets.US_ASCII));
      } catch (IOException e) {
        LOG.debug("watchdog: {}", e.toString());
      }
    }
  }

  /** posix_spawnp with {@code fd} as {@code childFd} in the child and every fd above closed. */
  private static int spawn(List<String> argv, List<String> envp, int fd, int childFd)
      throws IOException {
    int[] fds = new int[childFd + 1];
    java.util.Arrays.fill(fds, -1);
    fds[childFd] = fd;
    int pid = LibC.spawn(argv, envp, fds);
    if (pid < 0) {
      throw new IOException(argv.get(0) + ": " + LibC.strerror(-pid));
    }
    return pid;
  }

  /**
   * Receives one fd sent with SCM_RIGHTS ({@code struct msghdr} and {@code struct cmsghdr} of LP64
   * Linux).
   *
   * @return the fd, or -1 if the sender closed the socket without sending one
   */
  private static int receiveFd(int socket) throws IOException {
    MemoryIO m = LibC.MEMORY;
    long data = m.allocateMemory(8, true);
    long iov = m.allocateMemory(16, true);
    long control = m.allocateMemory(64, true);
    long msg = m.allocateMemory(56, true);
    try {
      m.putAddress(iov, data);
      m.putLong(iov + 8, 1);
      m.putAddress(msg + 16, iov); // msg_iov
      m.putLong(msg + 24, 1); // msg_iovlen
      m.putAddress(msg + 32, control); // msg_control
      m.putLong(msg + 40, 64); // msg_controllen
      long n;
      do {
        n = LibC.recvmsg(socket, msg, 0);
      } while (n < 0 && LibC.errno() == Errno.EINTR);
      if (n < 0) {
        throw new IOException("recvmsg from fusermount3: " + LibC.strerror(LibC.errno()));
      }
      if (n == 0 || m.getLong(msg + 40) < 20) {
        return -1;
      }
      if (m.getInt(control + 8) != LibC.SOL_SOCKET || m.getInt(control + 12) != LibC.SCM_RIGHTS) {
        throw new IOException("fusermount3 sent no file descriptor");
      }
      return m.getInt(control + 16);
    } finally {
      m.freeMemory(data);
      m.freeMemory(iov);
      m.freeMemory(control);
      m.freeMemory(msg);
    }
  }

  /** The mountpoint, absolute. */
  public Path mountpoint() {
    return mountpoint;
  }

  /** The /dev/fuse fd requests arrive on. */
  public int devFd() {
    return devFd;
  }

  /**
   * As root, sets the mount's readahead ({@code /sys/class/bdi/MAJ:MIN/read_ahead_kb}) so that
   * buffered reads arrive as requests of up to {@code kib} KiB. Does nothing without root.
   */
  public void raiseReadahead(int kib) {
    if (!privileged()) {
      return;
    }
    Optional<String> dev = mountEntry(mountpoint).map(e -> e.device());
    if (dev.isEmpty()) {
      return;
    }
    Path ra = Path.of("/sys/class/bdi", dev.get(), "read_ahead_kb");
    try {
      Files.writeString(ra, Integer.toString(kib));
    } catch (IOException e) {
      LOG.warn("{}: readahead left as it is: {}", ra, e.toString());
    }
  }

  /** Closes the /dev/fuse fd and tells the watchdog (unprivileged mounts) that all went well. */
  public void closeFds() {
    LibC.close(devFd);
    dismiss(watchdog);
  }

  /**
   * Unmounts the FUSE filesystem on {@code mountpoint}: umount2(2) as root, else {@code fusermount3
   * -u}. Works on a mount whose daemon has died.
   *
   * @param lazy detach now and finish when the last file is closed ({@code MNT_DETACH})
   * @throws BusyException naming the mountpoint when a file on it is open or a loop device is
   *     attached to one
   * @throws IOException naming the mountpoint: not a mount point, or not permitted
   */
  public static void unmount(Path mountpoint, boolean lazy) throws IOException {
    Path mnt = mountpoint.toAbsolutePath().normalize();
    if (privileged()) {
      if (LibC.umount2(mnt.toString(), lazy ? LibC.MNT_DETACH : 0) != 0) {
        int err = LibC.errno();
        throw unmountFailure(mnt, err == Errno.EBUSY, LibC.strerror(err));
      }
      return;
    }
    ProcessBuilder pb =
        lazy
            ? new ProcessBuilder("fusermount3", "-u", "-z", "--", mnt.toString())
            : new ProcessBuilder("fusermount3", "-u", "--", mnt.toString());
    pb.redirectErrorStream(true);
    Process p = pb.start();
    String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
    try {
      if (!p.waitFor(30, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IOException(mnt + ": fusermount3 -u did not finish");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException(mnt + ": interrupted while unmounting", e);
    }
    if (p.exitValue() != 0) {
      throw unmountFailure(mnt, out.contains("busy"), out);
    }
  }

  /**
   * Unmounts {@code mountpoint} for a daemon that is stopping (SIGTERM, SIGHUP): normally, or
   * lazily when it is busy; failures are logged, not thrown.
   */
  public static void unmountOrDetach(Path mountpoint) {
    try {
      unmount(mountpoint, false);
    } catch (IOException busy) {
      LOG.warn("{}; detaching lazily", busy.getMessage());
      try {
        unmount(mountpoint, true);
      } catch (IOException e) {
        LOG.error("{}", e.getMessage());
      }
    }
  }

  /** An unmount refused because a file on the mount is open (EBUSY). */
  public static final class BusyException extends IOException {
    private static final long serialVersionUID = 1L;

    BusyException(String message) {
      super(message);
    }
  }

  private static IOException unmountFailure(Path mnt, boolean busy, String reason) {
    String m = unmountMessage(mnt, busy, reason);
    return busy ? new BusyException(m) : new IOException(m);
  }

  private static String unmountMessage(Path mnt, boolean busy, String reason) {
    if (busy) {
      return mnt
          + ": busy: a file on it is open, or a loop device is attached to one;"
          + " close it (losetup -d for a loop device), or unmount with --lazy";
    }
    return mnt + ": cannot unmount: " + reason;
  }

  /**
   * One line of {@code /proc/self/mountinfo}.
   *
   * @param device the mount's device as "MAJ:MIN"
   * @param mountpoint where it is mounted
   * @param fstype its type, e.g. "fuse.jqcowfs"
   * @param source its source (fsname)
   */
  public record MountEntry(String device, Path mountpoint, String fstype, String source) {}

  /** The mount on exactly {@code mountpoint}, the last one when several are stacked. */
  public static Optional<MountEntry> mountEntry(Path mountpoint) {
    Path mnt = mountpoint.toAbsolutePath().normalize();
    MountEntry found = null;
    try {
      for (String line : Files.readAllLines(Path.of("/proc/self/mountinfo"))) {
        String[] f = line.split(" ");
        int dash = java.util.Arrays.asList(f).indexOf("-");
        if (f.length < 10 || dash < 6 || dash + 2 >= f.length) {
          continue;
        }
        if (Path.of(unescape(f[4])).equals(mnt)) {
          found = new MountEntry(f[2], mnt, f[dash + 1], unescape(f[dash + 2]));
        }
      }
    } catch (IOException e) {
      LOG.warn("/proc/self/mountinfo: {}", e.toString());
    }
    return Optional.ofNullable(found);
  }

  /** Undoes mountinfo's octal escapes (\040 for a space, \011, \012, \134). */
  private static String unescape(String s) {
    StringBuilder b = new StringBuilder();
    for (int i = 0; i < s.length(); i++) {
      char ch = s.charAt(i);
      if (ch == '\\' && i + 3 < s.length()) {
        try {
          b.append((char) Integer.parseInt(s.substring(i + 1, i + 4), 8));
          i += 3;
          continue;
        } catch (NumberFormatException e) {
          // not an escape
        }
      }
      b.append(ch);
    }
    return b.toString();
  }
}
