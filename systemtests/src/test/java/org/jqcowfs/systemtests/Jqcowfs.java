package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.jqcowfs.fuse.transport.FuseMount;

/** Runs the real {@code bin/jqcowfs} launcher of this source tree, and real mounts with it. */
final class Jqcowfs {
  /** The repository root (the systemtests module runs in its own folder). */
  static final Path ROOT = Path.of("").toAbsolutePath().getParent();

  static final Path LAUNCHER = ROOT.resolve("bin/jqcowfs");

  private Jqcowfs() {}

  /** A finished command. */
  record Run(int code, String out, String err) {}

  /** Runs any command to completion (60 s limit). */
  static Run exec(List<String> cmd) throws IOException, InterruptedException {
    Path out = Files.createTempFile("jqcowfs-out", ".txt");
    Path err = Files.createTempFile("jqcowfs-err", ".txt");
    try {
      Process p =
          new ProcessBuilder(cmd).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
      if (!p.waitFor(60, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IOException("timed out: " + cmd);
      }
      return new Run(p.exitValue(), Files.readString(out), Files.readString(err));
    } finally {
      Files.deleteIfExists(out);
      Files.deleteIfExists(err);
    }
  }

  /** Runs {@code bin/jqcowfs ARGS...}. */
  static Run run(String... args) throws IOException, InterruptedException {
    List<String> cmd = new ArrayList<>(List.of(LAUNCHER.toString()));
    cmd.addAll(Arrays.asList(args));
    return exec(cmd);
  }

  /** Whether {@code mnt} is a jqcowfs mount right now. */
  static boolean mounted(Path mnt) {
    return FuseMount.mountEntry(mnt).filter(e -> e.fstype().equals("fuse.jqcowfs")).isPresent();
  }

  /** Waits up to {@code millis} for {@link #mounted} to become {@code want}. */
  static boolean awaitMounted(Path mnt, boolean want, long millis) throws InterruptedException {
    long deadline = System.nanoTime() + millis * 1_000_000;
    while (mounted(mnt) != want) {
      if (System.nanoTime() > deadline) {
        return false;
      }
      Thread.sleep(20);
    }
    return true;
  }

  /**
   * A foreground daemon ({@code jqcowfs mount -f}) with its mount; closing unmounts and waits for
   * it to exit (and forces both if they do not go).
   */
  static final class Mount implements AutoCloseable {
    final Path mountpoint;
    final Process process;
    final Path log;

    private Mount(Path mountpoint, Process process, Path log) {
      this.mountpoint = mountpoint;
      this.process = process;
      this.log = log;
    }

    /** {@code command} must end with {@code mount -f ... MOUNTPOINT}. */
    static Mount start(Path mountpoint, List<String> command)
        throws IOException, InterruptedException {
      return start(mountpoint, command, java.util.Map.of());
    }

    /** As {@link #start(Path, List)}, with {@code env} added to the daemon's environment. */
    static Mount start(Path mountpoint, List<String> command, java.util.Map<String, String> env)
        throws IOException, InterruptedException {
      Path log = Files.createTempFile("jqcowfs-daemon", ".log");
      ProcessBuilder pb = new ProcessBuilder(command);
      pb.environment().putAll(env);
      Process p = pb.redirectErrorStream(true).redirectOutput(log.toFile()).start();
      Mount m = new Mount(mountpoint, p, log);
      long deadline = System.nanoTime() + 30_000_000_000L;
      while (!mounted(mountpoint)) {
        if (!p.isAlive() || System.nanoTime() > deadline) {
          String said = Files.readString(log);
          m.close();
          throw new IOException("mount did not come up: " + said);
        }
        Thread.sleep(20);
      }
      return m;
    }

    /** {@code bin/jqcowfs mount -f ARGS... MOUNTPOINT}. */
    static Mount of(Path mountpoint, String... args) throws IOException, InterruptedException {
      List<String> cmd = new ArrayList<>(List.of(LAUNCHER.toString(), "mount", "-f"));
      cmd.addAll(Arrays.asList(args));
      cmd.add(mountpoint.toString());
      return start(mountpoint, cmd);
    }

    /** The flat file named {@code name}. */
    Path file(String name) {
      return mountpoint.resolve(name);
    }

    String log() throws IOException {
      return Files.readString(log, StandardCharsets.UTF_8);
    }

    @Override
    public void close() throws IOException {
      try {
        unmountAndWait();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while unmounting " + mountpoint, e);
      } finally {
        Files.deleteIfExists(log);
      }
    }

    private void unmountAndWait() throws IOException, InterruptedException {
      {
        if (mounted(mountpoint)) {
          Run r = run("unmount", mountpoint.toString());
          if (r.code() != 0) {
            run("unmount", "--lazy", mountpoint.toString());
          }
        }
        if (!process.waitFor(20, TimeUnit.SECONDS)) {
          process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        }
        if (mounted(mountpoint)) {
          exec(List.of("umount", "-l", mountpoint.toString()));
        }
        assertTrue(!mounted(mountpoint), "still mounted: " + mountpoint);
      }
    }
  }
}
