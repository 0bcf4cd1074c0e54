package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.jqcowfs.fuse.transport.FuseMount;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The life of a mount: an unprivileged user through fusermount3, kill -9 leaving nothing mounted,
 * SIGTERM and SIGHUP unmounting, a busy unmount explained, failed mounts explained and leaving
 * nothing mounted, and the background (daemon) mode.
 */
class LifecycleIT {
  static final String NOBODY = "65534";

  /** A world-readable copy of what an unprivileged user needs: the jars and an image. */
  private static Path unprivilegedTree() throws Exception {
    Path base =
        Files.createTempDirectory(
            "jqcowfs-user",
            PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwxr-xr-x")));
    Path lib = Files.createDirectory(base.resolve("lib"));
    try (var jars = Files.list(Jqcowfs.ROOT.resolve("cli/target/lib"))) {
      for (Path jar : (Iterable<Path>) jars::iterator) {
        Files.copy(jar, lib.resolve(jar.getFileName()));
      }
    }
    Files.walk(Jqcowfs.ROOT.resolve("cli/target/classes"))
        .forEach(
            p -> {
              try {
                Path to =
                    base.resolve("classes")
                        .resolve(
                            Jqcowfs.ROOT.resolve("cli/target/classes").relativize(p).toString());
                Files.copy(p, to, StandardCopyOption.REPLACE_EXISTING);
              } catch (java.io.IOException e) {
                throw new java.io.UncheckedIOException(e);
              }
            });
    Files.copy(Jqcowfs.ROOT.resolve("examples/overlay.qcow2"), base.resolve("overlay.qcow2"));
    Files.copy(Jqcowfs.ROOT.resolve("examples/base.qcow2"), base.resolve("base.qcow2"));
    Jqcowfs.exec(List.of("chmod", "-R", "a+rX", base.toString()));
    Path mnt = Files.createDirectory(base.resolve("mnt"));
    Jqcowfs.exec(List.of("chown", NOBODY + ":" + NOBODY, mnt.toString()));
    return base;
  }

  /** {@code java ... org.jqcowfs.cli.Main ARGS} as user nobody. */
  private static List<String> asNobody(Path base, String... args) {
    List<String> cmd =
        new ArrayList<>(
            List.of(
                "setpriv",
                "--reuid=" + NOBODY,
                "--regid=" + NOBODY,
                "--clear-groups",
                "env",
                "HOME=/tmp",
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp",
                base.resolve("classes") + ":" + base.resolve("lib") + "/*",
                "org.jqcowfs.cli.Main"));
    cmd.addAll(List.of(args));
    return cmd;
  }

  @Test
  void unprivilegedUserMountsThroughFusermount3AndKillNineLeavesNoMount() throws Exception {
    Path base = unprivilegedTree();
    Path mnt = base.resolve("mnt");
    Path devFuse = Path.of("/dev/fuse");
    var mode = Files.getPosixFilePermissions(devFuse);
    Jqcowfs.exec(List.of("chmod", "0666", "/dev/fuse"));
    try {
      String reference =
          Qemu.sha256(
              Qemu.convertRaw(base.resolve("overlay.qcow2"), base.resolve("qemu.raw"), null));
      // mount as nobody, read as nobody, unmount as nobody
      Jqcowfs.Mount m =
          Jqcowfs.Mount.start(
              mnt,
              asNobody(
                  base, "mount", "-f", base.resolve("overlay.qcow2").toString(), mnt.toString()));
      assertTrue(
          FuseMount.mountEntry(mnt).orElseThrow().fstype().equals("fuse.jqcowfs"), "mounted");
      Jqcowfs.Run sum =
          Jqcowfs.exec(
              List.of(
                  "setpriv",
                  "--reuid=" + NOBODY,
                  "--regid=" + NOBODY,
                  "--clear-groups",
                  "sha256sum",
                  mnt.resolve("overlay.raw").toString()));
      assertEquals(0, sum.code(), sum.err());
      assertEquals(reference, sum.out().split(" ")[0]);
      Jqcowfs.Run unmount = Jqcowfs.exec(asNobody(base, "unmount", mnt.toString()));
      assertEquals(0, unmount.code(), unmount.err());
      assertTrue(Jqcowfs.awaitMounted(mnt, false, 10_000));
      assertTrue(m.process.waitFor(20, TimeUnit.SECONDS), "the daemon exits after unmount");
      m.close();

      // kill -9 of the daemon: the watchdog unmounts
      Jqcowfs.Mount killed =
          Jqcowfs.Mount.start(
              mnt,
              asNobody(
                  base, "mount", "-f", base.resolve("overlay.qcow2").toString(), mnt.toString()));
      killed.process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
      assertTrue(Jqcowfs.awaitMounted(mnt, false, 10_000), "stale mount after kill -9");
      killed.close();
    } finally {
      Files.setPosixFilePermissions(devFuse, mode);
      Jqcowfs.exec(List.of("rm", "-rf", base.toString()));
    }
  }

  @Test
  void sigtermAndSighupUnmount(@TempDir Path dir) throws Exception {
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    String image = Jqcowfs.ROOT.resolve("examples/overlay.qcow2").toString();
    // Five rounds each: a signal right as the mount appears can come before FUSE_INIT is
    // answered, where the daemon once waited for an INIT that the unmount had taken away.
    for (String signal :
        new String[] {"TERM", "HUP", "TERM", "HUP", "TERM", "HUP", "TERM", "HUP", "TERM", "HUP"}) {
      try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image)) {
        Jqcowfs.Run kill =
            Jqcowfs.exec(List.of("kill", "-" + signal, Long.toString(m.process.pid())));
        assertEquals(0, kill.code());
        assertTrue(Jqcowfs.awaitMounted(mnt, false, 10_000), "SIG" + signal + " must unmount");
        assertTrue(m.process.waitFor(10, TimeUnit.SECONDS), "the daemon exits on SIG" + signal);
      }
    }
  }

  @Test
  void unmountWhileAFileIsOpenIsExplained(@TempDir Path dir) throws Exception {
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    try (Jqcowfs.Mount m =
        Jqcowfs.Mount.of(mnt, Jqcowfs.ROOT.resolve("examples/overlay.qcow2").toString())) {
      try (FileChannel open = FileChannel.open(m.file("overlay.raw"), StandardOpenOption.READ)) {
        Jqcowfs.Run r = Jqcowfs.run("unmount", mnt.toString());
        assertNotEquals(0, r.code());
        assertTrue(r.err().contains("busy") && r.err().contains(mnt.toString()), r.err());
        assertTrue(Jqcowfs.mounted(mnt), "a busy unmount leaves the mount alone");
      }
      Jqcowfs.Run r = Jqcowfs.run("unmount", mnt.toString());
      assertEquals(0, r.code(), r.err());
      assertTrue(Jqcowfs.awaitMounted(mnt, false, 10_000));
    }
  }

  @Test
  void failedMountsExplainAndLeaveNothingMounted(@TempDir Path dir) throws Exception {
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Qemu.img(
        dir,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-b",
        "gone.qcow2",
        "-F",
        "qcow2",
        "orphan.qcow2",
        "64M");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "bad.qcow2", "64M");
    try (FileChannel ch = FileChannel.open(dir.resolve("bad.qcow2"), StandardOpenOption.WRITE)) {
      ch.write(java.nio.ByteBuffer.wrap(new byte[] {0, 0, 0, 40}), 20); // cluster_bits = 40
    }
    Path file = Files.writeString(dir.resolve("file"), "x");
    String[][] cases = {
      {dir.resolve("bad.qcow2").toString(), mnt.toString(), "cluster_bits"},
      {dir.resolve("orphan.qcow2").toString(), mnt.toString(), "gone.qcow2"},
      {Jqcowfs.ROOT.resolve("examples/base.qcow2").toString(), file.toString(), "not a directory"},
      {dir.resolve("missing.qcow2").toString(), mnt.toString(), "missing.qcow2"},
    };
    for (String[] c : cases) {
      Jqcowfs.Run r = Jqcowfs.run("mount", c[0], c[1]);
      assertNotEquals(0, r.code(), "mount " + c[0] + " " + c[1] + " must fail");
      assertTrue(r.err().contains(c[2]), "the reason names " + c[2] + ": " + r.err());
      assertFalse(Jqcowfs.mounted(mnt), "nothing mounted");
    }
  }

  @Test
  void backgroundMountReturnsOnceLive(@TempDir Path dir) throws Exception {
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path image = Jqcowfs.ROOT.resolve("examples/overlay.qcow2");
    Jqcowfs.Run r = Jqcowfs.run("mount", image.toString(), mnt.toString());
    try {
      assertEquals(0, r.code(), r.err());
      assertTrue(Jqcowfs.mounted(mnt), "live when the command returns");
      long daemon = daemonOf(mnt);
      // /proc/PID/stat: pid (comm) state ppid pgrp session ...; comm is "java" here.
      String[] stat = Files.readString(Path.of("/proc", Long.toString(daemon), "stat")).split(" ");
      assertEquals(Long.toString(daemon), stat[5], "the daemon leads a session of its own");
      assertEquals(
          "/dev/null",
          Files.readSymbolicLink(Path.of("/proc", Long.toString(daemon), "fd", "2")).toString(),
          "the daemon's stderr is let go once it is ready");
      String reference = Qemu.sha256(Qemu.convertRaw(image, dir.resolve("qemu.raw"), null));
      assertEquals(reference, Qemu.sha256(mnt.resolve("overlay.raw")));
    } finally {
      Jqcowfs.Run u = Jqcowfs.run("unmount", mnt.toString());
      assertEquals(0, u.code(), u.err());
    }
    assertFalse(Jqcowfs.mounted(mnt));
  }

  /** The pid of the one process serving {@code mnt}: the daemon with {@code mnt} on its line. */
  private static long daemonOf(Path mnt) {
    List<Long> found =
        ProcessHandle.allProcesses()
            .filter(
                p ->
                    p.info()
                        .commandLine()
                        .filter(c -> c.contains("--notify-ready") && c.endsWith(" " + mnt))
                        .isPresent())
            .map(ProcessHandle::pid)
            .toList();
    assertEquals(1, found.size(), "one daemon for " + mnt + ": " + found);
    return found.get(0);
  }
}
