package org.jqcowfs.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.daemon.DaemonLog;
import org.jqcowfs.cli.daemon.Daemonizer;
import org.jqcowfs.cli.daemon.Signals;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.fuse.filesystem.FlatFile;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;
import org.jqcowfs.fuse.filesystem.MountOptions;
import org.jqcowfs.fuse.transport.FuseMount;
import org.jqcowfs.fuse.transport.JnrFuseBackend;
import org.jqcowfs.fuse.transport.KernelBackend;
import org.jqcowfs.fuse.transport.Mounted;
import org.jqcowfs.remote.RemoteStats;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.Location;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

/**
 * {@code jqcowfs mount}: the images' virtual disks as read-only flat files under a mountpoint.
 * Without {@code -f} the mount runs as a daemon: the command returns 0 once the mount is live, or
 * the daemon's exit status with its message: this command starts itself again as {@code mount
 * --foreground --notify-ready} in a session of its own and waits for {@link #READY} ({@link
 * #daemonize}, the one daemonizer).
 */
@Command(
    name = "mount",
    mixinStandardHelpOptions = true,
    customSynopsis = "jqcowfs mount [OPTIONS] IMAGE... MOUNTPOINT",
    description = {
      "Mount each IMAGE (with its backing chain) as a raw file in MOUNTPOINT, read-only unless"
          + " --rw: image.qcow2 -> MOUNTPOINT/image.raw.",
      "SIGTERM or SIGHUP, or 'jqcowfs unmount MOUNTPOINT', unmount it."
    })
final class MountCommand implements Callable<Integer> {
  private static final Logger LOG = LoggerFactory.getLogger(MountCommand.class);

  /** The line a daemon prints on stdout when its mount is live. */
  static final String READY = "jqcowfs: mount ready";

  enum Backend {
    kernel,
    jnr_fuse
  }

  @Option(
      names = {"-f", "--foreground"},
      description = "Stay in the foreground, logging to stderr, until unmounted.")
  boolean foreground;

  @Option(names = "--allow-other", description = "Let other users read the files (allow_other).")
  boolean allowOther;

  @Option(
      names = "--threads",
      paramLabel = "N",
      description =
          "Threads answering the kernel (default: one per core; 16 for a URL, whose reads wait"
              + " on round trips).")
  Integer threads;

  /** The --threads default for a URL: enough READs in flight to cover round trips. */
  private static final int REMOTE_THREADS = 16;

  @Option(
      names = "--cache-size",
      paramLabel = "BYTES",
      converter = ByteCount.class,
      description = "L2 table cache per qcow2 layer, in bytes (64M, 1G; default: QEMU's).")
  long cacheBytes = -1;

  @Option(
      names = "--backend",
      paramLabel = "kernel|jnr-fuse",
      converter = BackendConverter.class,
      description =
          "kernel: jqcowfs's own FUSE protocol (default; SEEK_DATA/SEEK_HOLE, 1 MiB requests)."
              + " jnr-fuse: libfuse2, portable, no SEEK_DATA/SEEK_HOLE, 128 KiB requests.")
  Backend backend = Backend.kernel;

  @Option(
      names = "-o",
      paramLabel = "OPTS",
      description =
          "Mount options, comma-separated: allow_other, fsname=NAME, noexec, noatime, uid=N,"
              + " gid=N, umask=M (the flat files' owner, group and mode; by default the image"
              + " file's owner and group and its read bits: 0600 -> 0400)"
              + " (ro, nosuid, nodev are always on).")
  List<String> mountOptions = new ArrayList<>();

  @Option(names = "--debug", description = "Log every FUSE request and its answer.")
  boolean debug;

  @Option(
      names = "--rw",
      description =
          "Mount read-write: writes go into the top image (copy-on-write from its backing files,"
              + " which stay read-only); fsync makes them durable; unmount, SIGTERM and SIGHUP"
              + " flush and close the image clean.")
  boolean rw;

  @Option(
      names = "--overlay",
      paramLabel = "NEW.qcow2",
      description =
          "Mount read-write through NEW.qcow2, a qcow2 overlay over IMAGE: created when missing"
              + " (its backing name relative to its own directory, or IMAGE's URL; the format"
              + " recorded), reused when it already names IMAGE. IMAGE and its chain stay"
              + " untouched.")
  Path overlay;

  @Option(
      names = "--scratch",
      description =
          "Mount read-write through a temporary overlay that is deleted at unmount (QEMU's"
              + " -snapshot): the changes are thrown away. IMAGE stays untouched.")
  boolean scratch;

  @Option(
      names = {"-l", "--snapshot"},
      paramLabel = "ID|NAME",
      description = "Show an internal snapshot of the image instead of its current state.")
  String snapshot;

  @Option(
      names = "--name",
      paramLabel = "NAME",
      description = "The flat file's name (one image only; default: IMAGE with .raw).")
  String name;

  @Option(
      names = "--format",
      paramLabel = "qcow2|raw",
      converter = ImageOptions.FormatConverter.class,
      description = "The images' format (default: qcow2; never probed).")
  ChainOpener.Format format = ChainOpener.Format.QCOW2;

  @Mixin ImageOptions share = new ImageOptions();

  @Option(
      names = "--log-file",
      paramLabel = "FILE",
      description =
          "Once the mount is live, log to FILE (appended). Without it a background mount logs to"
              + " syslog (/dev/log), or to the journal when it is stderr ($JOURNAL_STREAM); -f"
              + " keeps stderr.")
  Path logFile;

  @Option(
      names = "--pid-file",
      paramLabel = "FILE",
      description =
          "Write the daemon's process id to FILE once the mount is live (removed at exit).")
  Path pidFile;

  @Option(names = "--syslog-socket", hidden = true)
  String syslogSocket = "/dev/log";

  @Option(names = "--notify-ready", hidden = true)
  boolean notifyReady;

  @Parameters(
      arity = "2..*",
      paramLabel = "IMAGE",
      description =
          "The images (qcow2 or raw; local paths, or http://, https:// or s3:// URLs), then MOUNTPOINT,"
              + " an existing directory.")
  List<String> paths;

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public Integer call() throws Exception {
    boolean remote = false;
    for (String image : paths.subList(0, paths.size() - 1)) {
      remote |= share.location(image).localPath().isEmpty();
    }
    if (threads == null) {
      threads = remote ? REMOTE_THREADS : Runtime.getRuntime().availableProcessors();
    }
    if (threads < 1 || threads > 256) {
      throw new IllegalArgumentException("--threads must be 1..256, not " + threads);
    }
    if ((overlay != null || scratch) && (paths.size() != 2 || (overlay != null && scratch))) {
      throw new IllegalArgumentException(
          "--overlay or --scratch: one of them, over exactly one IMAGE");
    }
    if (writable() && snapshot != null) {
      throw new IllegalArgumentException("--snapshot is read-only: not with --rw");
    }
    MountOptions options =
        MountOptions.DEFAULT.withWritable(writable()).with(allowOther ? "allow_other" : "");
    String source = paths.size() == 2 ? source(share.location(paths.get(0))) : "";
    if (!source.isEmpty()) {
      options = options.with("fsname=" + source); // /proc/mounts shows the image as the source
    }
    for (String o : mountOptions) {
      options = options.with(o);
    }
    if (snapshot != null && paths.size() > 2) {
      throw new IllegalArgumentException("--snapshot needs exactly one image");
    }
    Path mountpoint = Path.of(paths.get(paths.size() - 1));
    for (String image : paths.subList(0, paths.size() - 1)) {
      if (rw && share.location(image).localPath().isEmpty()) {
        throw new IllegalArgumentException(
            share.location(image) + ": a remote image is never written; mount it without --rw");
      }
    }
    if (!Files.isDirectory(mountpoint)) {
      throw new IllegalArgumentException(
          mountpoint + ": " + (Files.exists(mountpoint) ? "not a directory" : "no such directory"));
    }
    if (logFile != null) { // refused before the mount, not after it is live
      Files.newOutputStream(logFile, StandardOpenOption.CREATE, StandardOpenOption.APPEND).close();
    }
    if (!foreground) {
      List<String> args = new ArrayList<>(spec.commandLine().getParseResult().originalArgs());
      args.addAll(args.indexOf("mount") + 1, List.of("--foreground", "--notify-ready"));
      return Daemonizer.start(Main.class.getName(), args, READY);
    }
    List<Location> images = new ArrayList<>();
    for (String image : paths.subList(0, paths.size() - 1)) {
      images.add(share.location(image));
    }
    ChainOptions chainOptions =
        share.apply(
            ChainOptions.DEFAULT
                .withL2CacheBytes(cacheBytes)
                .withSnapshot(snapshot)
                .withTopFormat(format));
    Path scratchFile = null;
    if (overlay != null || scratch) {
      Location image = images.get(0);
      Path top;
      if (scratch) {
        scratchFile = Files.createTempFile("jqcowfs-scratch-", ".qcow2");
        Files.delete(scratchFile); // created below as an overlay
        top = scratchFile;
        name = name != null ? name : FlatFileSystem.rawName(Path.of(Disks.fileName(image)));
      } else {
        top = overlay;
      }
      Overlays.createOrReuse(top, image, format, share.withOpener(chainOptions));
      List<Location> dirs = new ArrayList<>(chainOptions.allowDirs());
      dirs.add(image.directory()); // the overlay's chain: the image's own directory or URL prefix
      chainOptions =
          chainOptions
              .withAllowedDirs(
                  dirs, chainOptions.unsafeBacking(), chainOptions.probeBackingFormat())
              .withTopFormat(ChainOpener.Format.QCOW2);
      images = List.of(FileLocation.of(top));
    }
    chainOptions =
        share.withOpener(chainOptions.withHostIo(chainOptions.hostIo().withWritable(writable())));
    return serve(images, mountpoint, options, chainOptions, scratchFile);
  }

  /**
   * What /proc/mounts shows as the source: the image's absolute path, or its URL as messages show
   * it (never user information or a query); empty when it would not survive the option syntax.
   */
  private static String source(Location image) {
    String s =
        image
            .localPath()
            .map(p -> p.toAbsolutePath().normalize().toString())
            .orElse(image.toString());
    return s.contains("?") || s.contains(",") || s.matches(".*\\s.*") ? "" : s;
  }

  /** Whether the mount is read-write: --rw, --overlay or --scratch. */
  private boolean writable() {
    return rw || overlay != null || scratch;
  }

  /**
   * Opens the images, mounts them and serves until unmounted; then closes them (flushed) and
   * deletes {@code scratch} (a --scratch overlay, or null), before a signal's exit may go on.
   */
  private int serve(
      List<Location> images,
      Path mountpoint,
      MountOptions options,
      ChainOptions chainOptions,
      Path scratch)
      throws Exception {
    CountDownLatch closed = new CountDownLatch(1);
    try (FlatFileSystem fs =
        FlatFileSystem.of(Disks.open(images, name, chainOptions, options.ownership()))) {
      share.wipeKeys(); // every layer is open: its cipher holds what it needs
      // The hook exists before the mount does, so a SIGTERM at any moment unmounts.
      AtomicReference<Mounted> live = new AtomicReference<>();
      AtomicBoolean mounting = new AtomicBoolean();
      Runtime.getRuntime()
          .addShutdownHook(
              new Thread(
                  () -> {
                    // A live mount's images are flushed and closed before the exit; one still
                    // coming up has served no write, and its main thread may wait for an INIT
                    // that the unmount took away.
                    boolean wasLive = unmountOnExit(live, mounting, mountpoint);
                    awaitClosed(closed, wasLive ? 600 : 2);
                  },
                  "jqcowfs-unmount"));
      Signals.exitOnHangupAndTerm();
      mounting.set(true);
      Mounted mounted =
          backend == Backend.kernel
              ? KernelBackend.mount(fs, mountpoint, options, threads, debug)
              : JnrFuseBackend.mount(fs, mountpoint, options, debug);
      live.set(mounted);
      if (pidFile != null) {
        Files.writeString(pidFile, ProcessHandle.current().pid() + "\n");
      }
      DaemonLog.moveLog(notifyReady, logFile, syslogSocket);
      for (FlatFile f : fs.files()) {
        LOG.info("{}/{}: {} bytes", mounted.mountpoint(), f.name(), f.size());
      }
      if (notifyReady) {
        System.out.println(READY);
        System.out.flush();
        DaemonLog.closeStdout();
      }
      try {
        DaemonLog.notifySystemd("READY=1");
      } catch (IOException e) {
        LOG.warn("NOTIFY_SOCKET: {}", e.getMessage());
      }
      mounted.awaitUnmounted();
      RemoteStats remote = share.remoteStats();
      if (remote != null && remote.requests() > 0) {
        LOG.info("remote images: {}", remote);
      }
    } finally {
      if (scratch != null) {
        Files.deleteIfExists(scratch);
      }
      closed.countDown();
      if (pidFile != null) {
        Files.deleteIfExists(pidFile);
      }
    }
    return 0;
  }

  /**
   * Waits (a signal's exit) until the main thread has closed the images, at most {@code seconds}.
   */
  private static void awaitClosed(CountDownLatch closed, int seconds) {
    try {
      if (!closed.await(seconds, TimeUnit.SECONDS)) {
        LOG.error("the images were not closed within {} s of the signal; exiting anyway", seconds);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /**
   * Shutdown hook: stops the mount, or detaches one still coming up; returns whether it was live.
   */
  private static boolean unmountOnExit(
      AtomicReference<Mounted> live, AtomicBoolean mounting, Path mountpoint) {
    try {
      DaemonLog.notifySystemd("STOPPING=1");
    } catch (IOException e) {
      LOG.warn("NOTIFY_SOCKET: {}", e.getMessage());
    }
    Mounted m = live.get();
    if (m != null) {
      m.stop();
      return true;
    } else if (mounting.get()
        && FuseMount.mountEntry(mountpoint)
            .filter(e -> e.fstype().equals("fuse.jqcowfs"))
            .isPresent()) {
      try {
        FuseMount.unmount(mountpoint, true);
      } catch (java.io.IOException e) {
        LOG.error("{}", e.getMessage());
      }
    }
    return false;
  }

  /** picocli converter for byte counts. */
  static final class ByteCount implements CommandLine.ITypeConverter<Long> {
    @Override
    public Long convert(String value) {
      return Sizes.parse(value);
    }
  }

  /** picocli converter for {@code --backend}: kernel or jnr-fuse. */
  static final class BackendConverter implements CommandLine.ITypeConverter<Backend> {
    @Override
    public Backend convert(String value) {
      return switch (value) {
        case "kernel" -> Backend.kernel;
        case "jnr-fuse", "jnr_fuse" -> Backend.jnr_fuse;
        default ->
            throw new CommandLine.TypeConversionException(
                "'" + value + "': the backends are kernel and jnr-fuse");
      };
    }
  }
}
