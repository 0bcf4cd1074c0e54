package org.jqcowfs.cli.daemon;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.jqcowfs.fuse.transport.LibC;

/**
 * Where a mount daemon's log goes once the mount is live, and what systemd is told. The log lines
 * are SLF4J's (slf4j-simple, on stderr); this class only moves stderr: to {@code --log-file} when
 * given; else, for a daemon in the background, to the journal when {@code $JOURNAL_STREAM} says
 * stderr is it, and to syslog ({@code /dev/log}) otherwise. A foreground daemon keeps stderr.
 */
public final class DaemonLog {
  /** syslog facility daemon (3), shifted as a PRI value wants it. */
  private static final int FACILITY_DAEMON = 3 << 3;

  private DaemonLog() {}

  /**
   * Moves the log as the class comment says. Called before the daemon says it is ready, so that
   * nothing logged after that goes to the launcher's stderr, and so that a missing syslog is told
   * to the user who mounted.
   *
   * @param background the daemon's parent goes once it is ready (the launcher's background mount)
   * @param logFile {@code --log-file}, or null
   * @param syslogSocket the syslog socket ({@code /dev/log}, or a test's)
   * @throws IOException if the log file cannot be opened (the message names it)
   */
  public static void moveLog(boolean background, Path logFile, String syslogSocket)
      throws IOException {
    if (logFile != null) {
      if (!Files.exists(logFile)) {
        Files.createFile(logFile);
      }
      int fd = LibC.open(logFile.toString(), 01 | 02000 | LibC.O_CLOEXEC); // O_WRONLY | O_APPEND
      if (fd < 0) {
        throw new IOException(logFile + ": " + LibC.strerror(LibC.errno()));
      }
      System.err.flush();
      DaemonCalls.dup2(fd, 2);
      LibC.close(fd);
      return;
    }
    if (!background || stderrIsTheJournal()) {
      return;
    }
    UnixDatagram syslog = null;
    try {
      syslog = UnixDatagram.to(syslogSocket);
      syslog.send(line(6, "logging to syslog from here on"));
    } catch (IOException e) {
      if (syslog != null) {
        syslog.close();
      }
      System.err.println(
          "jqcowfs: no syslog ("
              + e.getMessage()
              + "): the mount daemon's log is discarded; --log-file FILE keeps it");
      syslog = null;
    }
    int devNull = LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC);
    if (devNull < 0) {
      return;
    }
    System.err.flush();
    DaemonCalls.dup2(devNull, 2);
    LibC.close(devNull);
    if (syslog != null) {
      System.setErr(new PrintStream(new SyslogStream(syslog), true, StandardCharsets.UTF_8));
    }
  }

  /** Points stdout at /dev/null, once the launcher has read the ready line and gone. */
  public static void closeStdout() {
    int devNull = LibC.open("/dev/null", LibC.O_RDWR | LibC.O_CLOEXEC);
    if (devNull >= 0) {
      System.out.flush();
      DaemonCalls.dup2(devNull, 1);
      LibC.close(devNull);
    }
  }

  /** Whether {@code $JOURNAL_STREAM} ({@code DEV:INODE}) names the file stderr is. */
  static boolean stderrIsTheJournal() {
    String js = System.getenv("JOURNAL_STREAM");
    if (js == null || !js.contains(":")) {
      return false;
    }
    try {
      Path err = Path.of("/proc/self/fd/2");
      long dev = ((Number) Files.getAttribute(err, "unix:dev")).longValue();
      long ino = ((Number) Files.getAttribute(err, "unix:ino")).longValue();
      return js.equals(dev + ":" + ino);
    } catch (IOException | RuntimeException e) {
      return false;
    }
  }

  /** {@code <PRI>jqcowfs[PID]: MESSAGE}, the form syslog daemons read from /dev/log. */
  static String line(int severity, String message) {
    return "<"
        + (FACILITY_DAEMON + severity)
        + ">jqcowfs["
        + ProcessHandle.current().pid()
        + "]: "
        + message;
  }

  /** The severity of an slf4j-simple line ({@code [thread] LEVEL logger - message}). */
  static int severity(String line) {
    int end = line.indexOf(" - ");
    String head = end > 0 ? line.substring(0, end) : line;
    if (head.contains(" ERROR ")) {
      return 3;
    }
    if (head.contains(" WARN ")) {
      return 4;
    }
    return head.contains(" DEBUG ") || head.contains(" TRACE ") ? 7 : 6;
  }

  /** One datagram per line written to it; a line that cannot be sent is dropped. */
  private static final class SyslogStream extends OutputStream {
    private final UnixDatagram socket;
    private final ByteArrayOutputStream pending = new ByteArrayOutputStream();

    SyslogStream(UnixDatagram socket) {
      this.socket = socket;
    }

    @Override
    public synchronized void write(int b) {
      if (b == '\n') {
        String text = pending.toString(StandardCharsets.UTF_8);
        pending.reset();
        try {
          socket.send(line(severity(text), text));
        } catch (IOException e) {
          // nowhere left to say it: stderr is this stream
        }
      } else if (pending.size() < 8192) {
        pending.write(b);
      }
    }
  }

  /**
   * Tells systemd's notify socket ({@code $NOTIFY_SOCKET}, when set) {@code state}, e.g. {@code
   * READY=1}; a failure is logged by the caller's choice, never fatal.
   *
   * @throws IOException if the socket cannot be reached
   */
  public static void notifySystemd(String state) throws IOException {
    String socket = System.getenv("NOTIFY_SOCKET");
    if (socket == null || socket.isEmpty()) {
      return;
    }
    try (UnixDatagram d = UnixDatagram.to(socket)) {
      d.send(state + "\nMAINPID=" + ProcessHandle.current().pid());
    }
  }
}
