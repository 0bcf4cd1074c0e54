package org.jqcowfs.cli;

import org.jqcowfs.fuse.LibC;
import sun.misc.Signal;

/**
 * SIGTERM and SIGHUP end the daemon through its shutdown hooks (which unmount), even when the
 * daemon was started with them ignored: the JVM leaves a signal that is ignored at startup ignored
 * (a shell's {@code nohup}, or a parent that ignores SIGHUP), so the disposition is reset first.
 */
final class Signals {
  private static final int SIGHUP = 1;
  private static final int SIGTERM = 15;
  private static final long SIG_DFL = 0;

  private Signals() {}

  /** Makes SIGHUP and SIGTERM exit with status 128 + signal, running the shutdown hooks. */
  static void exitOnHangupAndTerm() {
    for (int number : new int[] {SIGHUP, SIGTERM}) {
      LibC.INSTANCE.signal(number, SIG_DFL);
      Signal.handle(
          new Signal(number == SIGHUP ? "HUP" : "TERM"), s -> System.exit(128 + s.getNumber()));
    }
  }
}
