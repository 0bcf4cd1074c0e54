package org.jqcowfs.cli;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.PrintWriter;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.util.Locale;
import java.util.concurrent.Callable;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.remote.RemoteOpener;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs snapshot -l}: the internal snapshots, as {@code qemu-img snapshot -l}. */
@Command(
    name = "snapshot",
    mixinStandardHelpOptions = true,
    description = "List the internal snapshots of a qcow2 image (read-only: -l only).")
final class SnapshotCommand implements Callable<Integer> {
  private static final DateTimeFormatter DATE =
      DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss", Locale.ROOT)
          .withZone(ZoneId.systemDefault());

  @Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(
      names = "-l",
      required = true,
      description = "List the snapshots (the only action of a read-only tool).")
  boolean list;

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(
      paramLabel = "IMAGE",
      description = "A local path, or an http://, https:// or s3://BUCKET/KEY URL.")
  String image;

  @Override
  public Integer call() throws Exception {
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
