package org.jqcowfs.cli.daemon;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.fuse.transport.LibC;

/**
 * The one daemonizer: the mount command started again in the background, waited for until ready.
 */
public final class Daemonizer {
  private Daemonizer() {}

  /**
   * Starts this JVM's {@code mainClass} again with {@code args} (the command run in the foreground,
   * told to print {@code ready}) in a new session (setsid), its stdin /dev/null, its stdout a pipe
   * to this process, its stderr ours; passes its output through and waits for its ready line or its
   * exit. Spawned with posix_spawn, not a {@code ProcessBuilder}: the JVM's process reaper would
   * sit in waitpid, and a JVM exits 0.3 s late when a thread is in a native call
   * (docs/decisions/one-daemonizer.md).
   *
   * @return 0 once the daemon is ready; else its exit status (128 + signal), at least 1
   * @throws IOException if the pipe or the spawn fails
   */
  public static int start(String mainClass, List<String> args, String ready) throws IOException {
    List<String> cmd = new ArrayList<>();
    if (Files.isExecutable(Path.of("/usr/bin/setsid"))) {
      cmd.add("/usr/bin/setsid");
    }
    cmd.addAll(javaCommand(mainClass));
    cmd.addAll(args);
    int[] pipe = new int[2];
    if (DaemonCalls.pipe(pipe) != 0) {
      throw new IOException("pipe: " + LibC.strerror(LibC.errno()));
    }
    int devNull = LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC);
    int pid;
    try {
      pid = LibC.spawn(cmd, DaemonCalls.environment(), new int[] {devNull, pipe[1], 2});
    } finally {
      LibC.close(pipe[1]);
      LibC.close(devNull);
    }
    try {
      if (pid < 0) {
        throw new IOException(cmd.get(0) + ": " + LibC.strerror(-pid));
      }
      if (passOutputUntilReady(pipe[0], ready)) {
        return 0;
      }
    } finally {
      LibC.close(pipe[0]);
    }
    int[] status = new int[1];
    while (LibC.waitpid(pid, status, 0) < 0 && LibC.errno() == Errno.EINTR) {
      // interrupted: wait again
    }
    int code = (status[0] & 0x7f) != 0 ? 128 + (status[0] & 0x7f) : (status[0] >> 8) & 0xff;
    return code != 0 ? code : 1;
  }

  /** Copies the daemon's lines from {@code fd} to stdout; true at its {@code ready} line. */
  private static boolean passOutputUntilReady(int fd, String ready) throws IOException {
    ByteBuffer buf = ByteBuffer.allocateDirect(4096);
    ByteArrayOutputStream line = new ByteArrayOutputStream();
    while (true) {
      long n = LibC.read(fd, buf.clear(), buf.capacity());
      if (n < 0 && LibC.errno() == Errno.EINTR) {
        continue;
      }
      if (n <= 0) {
        System.out.print(line.toString(StandardCharsets.UTF_8));
        return false;
      }
      for (int i = 0; i < n; i++) {
        byte b = buf.get(i);
        if (b != '\n') {
          line.write(b);
          continue;
        }
        String text = line.toString(StandardCharsets.UTF_8);
        line.reset();
        if (text.equals(ready)) {
          return true;
        }
        System.out.println(text);
      }
    }
  }

  /**
   * This JVM's command up to its main class, options included ({@code /proc/self/cmdline}, which
   * costs less to read than the JVM's management beans take to load).
   */
  private static List<String> javaCommand(String mainClass) {
    ProcessHandle.Info info = ProcessHandle.current().info();
    List<String> cmd = new ArrayList<>();
    cmd.add(
        info.command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString()));
    String[] arguments = info.arguments().orElse(new String[0]);
    for (String a : arguments) {
      cmd.add(a);
      if (a.equals(mainClass)) {
        return cmd;
      }
    }
    // Started some other way (a test's launcher): the class path and the main class.
    return List.of(cmd.get(0), "-cp", System.getProperty("java.class.path"), mainClass);
  }
}
