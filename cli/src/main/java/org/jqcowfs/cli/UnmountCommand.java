package org.jqcowfs.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;
import org.jqcowfs.fuse.transport.FuseMount;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code jqcowfs unmount}: ends a jqcowfs mount, also one whose daemon has died, and waits until
 * the daemon has exited. Exit codes that scripts can tell apart: {@link #UNMOUNTED}, {@link
 * #FAILED}, {@link #NOT_MOUNTED}, {@link #BUSY} (2 is picocli's usage error).
 */
@Command(
    name = "unmount",
    aliases = "umount",
    mixinStandardHelpOptions = true,
    description = "Unmount a jqcowfs mount and wait until its daemon has exited.",
    exitCodeListHeading = "%nExit status:%n",
    exitCodeList = {
      "0:unmounted (and the daemon has exited)",
      "1:failed (not permitted, or the daemon did not exit within 30 s)",
      "2:usage error",
      "3:nothing mounted there, or not a jqcowfs mount",
      "4:busy: a file on it is open or a loop device is attached (--lazy detaches anyway)"
    })
final class UnmountCommand implements Callable<Integer> {
  static final int UNMOUNTED = 0;
  static final int FAILED = 1;
  static final int NOT_MOUNTED = 3;
  static final int BUSY = 4;

  /** How long to wait for the daemon to exit after the unmount. */
  private static final long DAEMON_EXIT_MILLIS = 30_000;

  @Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(
      names = {"-z", "--lazy"},
      description = "Detach now even if a file is open; the mount ends when it is closed.")
  boolean lazy;

  @Parameters(index = "0", paramLabel = "MOUNTPOINT")
  Path mountpoint;

  @Override
  public Integer call() throws Exception {
    PrintWriter err = spec.commandLine().getErr();
    Path mnt = mountpoint.toAbsolutePath().normalize();
    FuseMount.MountEntry entry = FuseMount.mountEntry(mnt).orElse(null);
    if (entry == null || !entry.fstype().equals("fuse.jqcowfs")) {
      err.println(
          "jqcowfs: "
              + mnt
              + ": "
              + (entry == null
                  ? "not mounted"
                  : "not a jqcowfs mount (it is " + entry.fstype() + ")"));
      err.flush();
      return NOT_MOUNTED;
    }
    List<ProcessHandle> daemons = daemonsOf(mnt);
    try {
      FuseMount.unmount(mnt, lazy);
    } catch (FuseMount.BusyException e) {
      err.println("jqcowfs: " + e.getMessage());
      err.flush();
      return BUSY;
    }
    if (lazy) {
      return UNMOUNTED; // the daemon ends when the last file is closed
    }
    long deadline = System.currentTimeMillis() + DAEMON_EXIT_MILLIS;
    for (ProcessHandle d : daemons) {
      while (d.isAlive() && System.currentTimeMillis() < deadline) {
        Thread.sleep(20);
      }
      if (d.isAlive()) {
        err.println("jqcowfs: " + mnt + ": unmounted, but daemon " + d.pid() + " has not exited");
        err.flush();
        return FAILED;
      }
    }
    return UNMOUNTED;
  }

  /**
   * The jqcowfs daemons serving {@code mnt}: processes running {@code Main mount} whose last
   * argument, resolved against their working directory, is {@code mnt}.
   */
  static List<ProcessHandle> daemonsOf(Path mnt) {
    return ProcessHandle.allProcesses()
        .filter(
            p -> {
              String[] args = p.info().arguments().orElse(new String[0]);
              if (args.length < 3 || !List.of(args).contains(Main.class.getName())) {
                return false;
              }
              int at = List.of(args).indexOf(Main.class.getName());
              if (at + 1 >= args.length || !args[at + 1].equals("mount")) {
                return false;
              }
              try {
                Path cwd = Files.readSymbolicLink(Path.of("/proc/" + p.pid() + "/cwd"));
                return cwd.resolve(args[args.length - 1]).normalize().equals(mnt);
              } catch (IOException | RuntimeException e) {
                return false;
              }
            })
        .toList();
  }
}
