package org.jqcowfs.cli;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.PrintWriter;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.Locale;
import java.util.NoSuchElementException;
import java.util.concurrent.Callable;
import org.jqcowfs.cli.options.Errors;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.remote.RemoteOpener;
import org.jqcowfs.storage.Location;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code jqcowfs snapshot}: the internal snapshots, listed, created, applied and deleted as {@code
 * qemu-img snapshot} does (QEMU 7.2's messages and exit codes).
 */
@Command(
    name = "snapshot",
    mixinStandardHelpOptions = true,
    description = {
      "List (-l), create (-c), apply (-a: revert the disk to it, its size included) or delete (-d)"
          + " the internal snapshots of a qcow2 image, as qemu-img snapshot does. -c, -a and -d"
          + " change a local image, locked as for mount --rw; -a takes an ID or a name, -d a name."
    })
final class SnapshotCommand implements Callable<Integer> {
  private static final DateTimeFormatter DATE =
      DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss", Locale.ROOT)
          .withZone(ZoneId.systemDefault());

  @Spec picocli.CommandLine.Model.CommandSpec spec;

  @ArgGroup(exclusive = true, multiplicity = "1")
  Action action;

  /** The one action asked for. */
  static final class Action {
    @Option(names = "-l", description = "List the snapshots.")
    boolean list;

    @Option(names = "-c", paramLabel = "NAME", description = "Create snapshot NAME.")
    String create;

    @Option(names = "-a", paramLabel = "ID|NAME", description = "Apply (revert to) a snapshot.")
    String apply;

    @Option(names = "-d", paramLabel = "NAME", description = "Delete snapshot NAME.")
    String delete;
  }

  @Option(
      names = {"-q", "--quiet"},
      description = "Print nothing but errors.")
  boolean quiet;

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(
      paramLabel = "IMAGE",
      description = "A local path, or an http://, https:// or s3://BUCKET/KEY URL.")
  String image;

  @Override
  public Integer call() throws Exception {
    if (!action.list) {
      return change();
    }
    PrintWriter out = spec.commandLine().getOut();
    RemoteOpener opener = new RemoteOpener(PosixOpener.DEFAULT, share.remoteOptions());
    try (Qcow2Image q =
        Qcow2Image.open(share.location(image), Qcow2Options.DEFAULT.withStorage(opener))) {
      if (q.snapshotTableDamage().isPresent()) {
        throw new IOException(q.snapshotTableDamage().get());
      }
      if (!q.snapshots().isEmpty()) {
        out.println("Snapshot list:");
        out.println(header());
        for (Snapshot s : q.snapshots()) {
          out.println(
              row(
                  s.id(),
                  s.name(),
                  s.vmStateBytes(),
                  s.dateSeconds(),
                  s.vmClockNanos() / 1_000_000_000L,
                  s.vmClockNanos() % 1_000_000_000L,
                  s.icount()));
        }
      }
    }
    out.flush();
    return 0;
  }

  /** -c, -a or -d on a local image, opened writable without its backing chain (as qemu-img). */
  private int change() {
    PrintWriter err = spec.commandLine().getErr();
    String verb = action.create != null ? "create" : action.apply != null ? "apply" : "delete";
    String name =
        action.create != null ? action.create : action.apply != null ? action.apply : action.delete;
    Location at = share.location(image);
    if (at.localPath().isEmpty()) {
      return Errors.fail(err, image + ": an image on a server is read-only");
    }
    Qcow2Options writable =
        Qcow2Options.DEFAULT.withHostIo(HostFileOptions.DEFAULT.withWritable(true));
    try (Qcow2Image q = Qcow2Image.open(at, writable)) {
      switch (verb) {
        case "create" -> q.editor().createSnapshot(name);
        case "apply" -> q.editor().applySnapshot(name);
        default -> q.editor().deleteSnapshot(name);
      }
    } catch (IOException | IllegalArgumentException | NoSuchElementException e) {
      String why = e instanceof IOException ? Errors.message(e) : e.getMessage();
      return Errors.fail(err, "Could not " + verb + " snapshot '" + name + "': " + why);
    }
    return 0;
  }

  /** QEMU 7.2's {@code bdrv_snapshot_dump} header. */
  private static String header() {
    return String.format(
        Locale.ROOT,
        "%-10s%-17s%8s%20s%13s%11s",
        "ID",
        "TAG",
        "VM SIZE",
        "DATE",
        "VM CLOCK",
        "ICOUNT");
  }

  /** One row of {@code bdrv_snapshot_dump}; {@code icount} -1 leaves its column empty. */
  private static String row(
      String id,
      String name,
      long vmState,
      long dateSec,
      long clockSec,
      long clockNsec,
      long icount) {
    String clock =
        String.format(
            Locale.ROOT,
            "%02d:%02d:%02d.%03d",
            clockSec / 3600,
            (clockSec / 60) % 60,
            clockSec % 60,
            clockNsec / 1_000_000);
    return String.format(
        Locale.ROOT,
        "%-9s %-16s %8s%20s%13s%11s",
        id,
        name,
        Sizes.human(vmState),
        DATE.format(Instant.ofEpochSecond(dateSec)),
        clock,
        icount >= 0 ? Long.toString(icount) : "");
  }

  static void printTable(PrintWriter out, JsonNode snapshots) {
    out.println(header());
    for (JsonNode s : snapshots) {
      out.println(
          row(
              s.get("id").asText(),
              s.get("name").asText(),
              s.get("vm-state-size").asLong(),
              s.get("date-sec").asLong(),
              s.get("vm-clock-sec").asLong(),
              s.get("vm-clock-nsec").asLong(),
              s.path("icount").asLong(-1)));
    }
  }
}
