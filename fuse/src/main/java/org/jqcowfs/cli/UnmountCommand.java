package org.jqcowfs.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import org.jqcowfs.fuse.FuseMount;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/** {@code jqcowfs unmount}: ends a jqcowfs mount, also one whose daemon has died. */
@Command(
    name = "unmount",
    aliases = "umount",
    mixinStandardHelpOptions = true,
    description = "Unmount a jqcowfs mount (the daemon then exits).")
final class UnmountCommand implements Callable<Integer> {
  @Option(
      names = {"-z", "--lazy"},
      description = "Detach now even if a file is open; the mount ends when it is closed.")
  boolean lazy;

  @Parameters(index = "0", paramLabel = "MOUNTPOINT")
  Path mountpoint;

  @Override
  public Integer call() throws Exception {
    Path mnt = mountpoint.toAbsolutePath().normalize();
    FuseMount.MountEntry entry =
        FuseMount.mountEntry(mnt)
            .orElseThrow(() -> new IllegalArgumentException(mnt + ": not mounted"));
    if (!entry.fstype().equals("fuse.jqcowfs")) {
      throw new IllegalArgumentException(
          mnt + ": not a jqcowfs mount (it is " + entry.fstype() + ")");
    }
    FuseMount.unmount(mnt, lazy);
    return 0;
  }
}
