package org.jqcowfs.cli.daemon;

import sun.misc.Signal;

/**
 * SIGTERM and SIGHUP end the daemon through its shutdown hooks (which unmount), even when the
 * daemon was started with them ignored: the JVM leaves a signal that is ignored at startup ignored
 * (a shell's {@code nohup}, or a parent that ignores SIGHUP), so the disposition is reset first.
 */
public final class Signals {
  private static final int SIGHUP = 1;
  private static final int SIGTERM = 15;
  private static final long SIG_DFL = 0;
  private static final long SIG_IGN = 1;

  private Signals() {}

  /** Makes SIGHUP and SIGTERM exit with status 128 + signal, running the shutdown hooks. */
  public static void exitOnHangupAndTerm() {
    for (int number : new int[] {SIGHUP, SIGTERM}) {
      if (!ignored(number)) {
        continue; // the JVM's own handler runs the shutdown hooks
      }
      DaemonCalls.signal(number, SIG_DFL);
      Signal.handle(
          new Signal(number == SIGHUP ? "HUP" : "TERM"), s -> System.exit(128 + s.getNumber()));
    }
  }

  /** Whether {@code number}'s disposition is SIG_IGN ({@code struct sigaction}: handler first). */
  private static boolean ignored(int number) {
    long old = DaemonCalls.MEMORY.allocateMemory(256, true);
    try {
      return DaemonCalls.sigaction(number, 0, old) == 0
          && DaemonCalls.MEMORY.getLong(old) == SIG_IGN;
    } finally {
      DaemonCalls.MEMORY.freeMemory(old);
    }
  }
}
