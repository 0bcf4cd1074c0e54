package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The mount daemon as a Linux tool: where its log goes (a log file, syslog's socket) with an EIO
 * range in it, systemd's notify socket told READY=1 and STOPPING=1, and the exit codes of {@code
 * jqcowfs unmount}, each produced here.
 */
class DaemonIT {
  /** A 4 KiB-cluster image whose L2 entry 5 (guest [20K, 24K)) has a reserved bit set. */
  static Path damagedImage(Path dir) throws Exception {
    Path image = UntrustedImageIT.build(dir, "plain");
    UntrustedImageIT.orLong(image, UntrustedImageIT.l2Pos(image, 0, 5, 8), 2);
    return image;
  }

  /** A Unix datagram socket at {@code socket} whose datagrams a python3 process appends to out. */
  static Process listen(Path socket, Path out) throws Exception {
    Process p =
        new ProcessBuilder(
                "python3",
                "-c",
                "import socket, sys\n"
                    + "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
                    + "s.bind(sys.argv[1])\n"
                    + "while True:\n"
                    + "    d = s.recv(65536)\n"
                    + "    with open(sys.argv[2], 'ab') as f:\n"
                    + "        f.write(d + b'\\n--\\n')\n",
                socket.toString(),
                out.toString())
            .redirectErrorStream(true)
            .start();
    for (int i = 0; i < 100 && !Files.exists(socket); i++) {
      Thread.sleep(20);
    }
    assertTrue(Files.exists(socket), "the listener is up");
    return p;
  }

  static void await(BooleanSupplier condition, String what) throws InterruptedException {
    long deadline = System.nanoTime() + 20_000_000_000L;
    while (!condition.getAsBoolean() && System.nanoTime() < deadline) {
      Thread.sleep(50);
    }
    assertTrue(condition.getAsBoolean(), what);
  }

  static String read(Path f) {
    try {
      return Files.exists(f) ? Files.readString(f) : "";
    } catch (IOException e) {
      return "";
    }
  }

  static void readDamagedRange(Path flat) throws IOException {
    try (FileChannel ch = FileChannel.open(flat, StandardOpenOption.READ)) {
      assertThrows(IOException.class, () -> ch.read(ByteBuffer.allocate(4096), 20480));
    }
  }

  @Test
  void aBackgroundMountLogsAnEioRangeToItsLogFileAndToSyslog(@TempDir Path dir) throws Exception {
    Path image = damagedImage(dir);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path log = dir.resolve("daemon.log");
    Path pid = dir.resolve("daemon.pid");
    Jqcowfs.Run r =
        Jqcowfs.run(
            "mount",
            "--log-file",
            log.toString(),
            "--pid-file",
            pid.toString(),
            image.toString(),
            mnt.toString());
    assertEquals(0, r.code(), r.err());
    try {
      long daemon = Long.parseLong(Files.readString(pid).trim());
      assertTrue(ProcessHandle.of(daemon).isPresent(), "the pid file names the daemon");
      readDamagedRange(mnt.resolve("d.raw"));
      await(() -> read(log).contains("guest offset 0x5000"), "the EIO range is in the log file");
      String text = read(log);
      assertTrue(text.contains("L1[0]/L2[5]") && text.contains(image.toString()), text);
    } finally {
      assertEquals(0, Jqcowfs.run("unmount", mnt.toString()).code());
    }
    assertFalse(Files.exists(pid), "the pid file is removed at exit");

    Path socket = dir.resolve("log.sock");
    Path got = dir.resolve("syslog.txt");
    Process listener = listen(socket, got);
    try {
      r =
          Jqcowfs.run(
              "mount", "--syslog-socket", socket.toString(), image.toString(), mnt.toString());
      assertEquals(0, r.code(), r.err());
      try {
        readDamagedRange(mnt.resolve("d.raw"));
        Jqcowfs.Run mounted = r;
        await(
            () -> read(got).contains("guest offset 0x5000"),
            "the EIO range reaches syslog: " + mounted.err() + " / " + read(got));
        String text = read(got);
        assertTrue(text.matches("(?s).*<2[78]>jqcowfs\\[\\d+\\]: .*L1\\[0\\]/L2\\[5\\].*"), text);
      } finally {
        assertEquals(0, Jqcowfs.run("unmount", mnt.toString()).code());
      }
    } finally {
      listener.destroy();
      listener.waitFor(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void aForegroundMountTellsSystemdReadyOnceTheFileReads(@TempDir Path dir) throws Exception {
    Path image = UntrustedImageIT.build(dir, "plain");
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    Path socket = dir.resolve("notify.sock");
    Path got = dir.resolve("notify.txt");
    Process listener = listen(socket, got);
    try {
      List<String> cmd =
          new ArrayList<>(List.of(Jqcowfs.LAUNCHER.toString(), "mount", "-f", image.toString()));
      cmd.add(mnt.toString());
      try (Jqcowfs.Mount m =
          Jqcowfs.Mount.start(mnt, cmd, Map.of("NOTIFY_SOCKET", socket.toString()))) {
        await(() -> read(got).contains("READY=1"), "READY=1 sent");
        assertTrue(read(got).contains("MAINPID=" + m.process.pid()), read(got));
        assertEquals(8 << 20, Files.size(m.file("d.raw")), "readable when READY=1 came");
        assertFalse(read(got).contains("STOPPING=1"));
        m.process.destroy(); // SIGTERM, as systemd stops a service
        assertTrue(m.process.waitFor(20, TimeUnit.SECONDS));
        assertEquals(143, m.process.exitValue(), "exit status of a SIGTERM'd JVM");
      }
      await(() -> read(got).contains("STOPPING=1"), "STOPPING=1 sent");
      assertFalse(Jqcowfs.mounted(mnt));
    } finally {
      listener.destroy();
      listener.waitFor(5, TimeUnit.SECONDS);
    }
  }

  @Test
  void unmountExitCodes(@TempDir Path dir) throws Exception {
    Path image = UntrustedImageIT.build(dir, "plain");
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    assertEquals(3, Jqcowfs.run("unmount", mnt.toString()).code(), "nothing mounted there");

    Path other = Files.createDirectory(dir.resolve("tmpfs"));
    assertEquals(0, Jqcowfs.exec(List.of("mount", "-t", "tmpfs", "none", other.toString())).code());
    try {
      Jqcowfs.Run r = Jqcowfs.run("unmount", other.toString());
      assertEquals(3, r.code(), "not a jqcowfs mount: " + r.err());
      assertTrue(r.err().contains("not a jqcowfs mount (it is tmpfs)"), r.err());
    } finally {
      Jqcowfs.exec(List.of("umount", other.toString()));
    }

    assertEquals(0, Jqcowfs.run("mount", image.toString(), mnt.toString()).code());
    List<ProcessHandle> daemons = new ArrayList<>();
    try (FileChannel open = FileChannel.open(mnt.resolve("d.raw"), StandardOpenOption.READ)) {
      daemons.addAll(
          ProcessHandle.allProcesses()
              .filter(p -> p.info().commandLine().orElse("").contains(mnt.toString()))
              .filter(p -> p.info().commandLine().orElse("").contains("--notify-ready"))
              .toList());
      assertEquals(1, daemons.size(), "one daemon");
      Jqcowfs.Run busy = Jqcowfs.run("unmount", mnt.toString());
      assertEquals(4, busy.code(), "busy: " + busy.err());
      assertTrue(busy.err().contains("busy"), busy.err());
      assertTrue(open.size() > 0);
    }
    // another user may not unmount root's mount: a failure, not "busy" and not "not mounted"
    Jqcowfs.Run denied =
        Jqcowfs.exec(
            List.of(
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                Jqcowfs.LAUNCHER.toString(),
                "unmount",
                mnt.toString()));
    assertEquals(1, denied.code(), "failed: " + denied.err());
    assertTrue(Jqcowfs.mounted(mnt));
    Jqcowfs.Run r = Jqcowfs.run("unmount", mnt.toString());
    assertEquals(0, r.code(), r.err());
    assertFalse(daemons.get(0).isAlive(), "unmount returned once the daemon had exited");
    assertEquals(2, Jqcowfs.run("unmount").code(), "usage error");
  }
}
