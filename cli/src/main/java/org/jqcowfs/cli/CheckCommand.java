package org.jqcowfs.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintWriter;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.qcow2.Qcow2Check;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.TablePastEndException;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.jqcowfs.storage.StorageOpener;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code jqcowfs check}: the consistency check of a qcow2 image, as {@code qemu-img check} reports
 * it (the same messages, counts and exit codes), and with {@code -r leaks|all} its repairs.
 */
@Command(
    name = "check",
    mixinStandardHelpOptions = true,
    description = {
      "Check a qcow2 image for corruptions and leaked clusters, as qemu-img check does.",
      "Exit status: 0 no errors, 1 the check could not be done, 2 corruptions, 3 leaked clusters"
          + " only, 63 not a qcow2 image."
    })
final class CheckCommand implements Callable<Integer> {
  @Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(names = "--output", description = "human or json (default: human)")
  OutputFormat output = OutputFormat.human;

  /** What {@code -r} repairs. */
  enum RepairMode {
    leaks,
    all
  }

  @Option(
      names = {"-r", "--repair"},
      paramLabel = "leaks|all",
      description = {
        "Repair leaked clusters (leaks), or also corruptions: wrong refcounts, a damaged refcount"
            + " structure (rebuilt), COPIED flags (all). The image is locked for writing."
      })
  RepairMode repair;

  @Parameters(
      paramLabel = "IMAGE",
      description = "A local path, or an http://, https:// or s3://BUCKET/KEY URL.")
  String argument;

  @Mixin ImageOptions share = new ImageOptions();

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    Location location = share.location(argument);
    Path image = location.localPath().orElse(null);
    if (image == null && repair != null) {
      throw new IllegalArgumentException(
          location + ": a remote image is never written; check it without -r");
    }
    ChainOptions options = share.withOpener(share.apply(ChainOptions.DEFAULT));
    // qemu-img check opens the image with its backing chain first: a chain that does not open
    // (a missing backing file, a name the rules refuse) is not checked, exit status 1
    if (image != null
        ? Files.isRegularFile(image) && !startsWithQcow2Magic(image)
        : !startsWithQcow2Magic(options.opener(), location)) {
      err.println(
          "jqcowfs: "
              + location
              + ": not a qcow2 image: this image format does not support checks");
      err.flush();
      return NO_CHECKS; // qemu-img check's answer for raw (and for what it probes as raw)
    }
    try {
      ChainOpener.open(location, options).close();
    } catch (TablePastEndException e) {
      // qemu-img opens it (past the end reads as zeros); the check reports what it finds there
    }
    Qcow2Check.Result r;
    Qcow2Check.Repair fixed = null;
    if (repair != null) {
      // qemu-img prints the repair summary on stdout, the findings on stderr
      fixed =
          Qcow2Check.repair(
              image,
              repair == RepairMode.all,
              line -> (isSummary(line) && output == OutputFormat.human ? out : err).println(line));
      r = fixed.after();
    } else if (image != null) {
      r = Qcow2Check.check(image, line -> err.println(line));
    } else {
      try (Storage file = options.opener().open(location, false)) {
        r = Qcow2Check.check(file, line -> err.println(line));
      }
    }
    err.flush();
    if (output == OutputFormat.json) {
      out.println(json(r, fixed));
    } else {
      human(r, out);
    }
    out.flush();
    return r.exitStatus();
  }

  /** qemu-img check's exit status for an image format without checks. */
  static final int NO_CHECKS = 63;

  private static boolean startsWithQcow2Magic(StorageOpener opener, Location location)
      throws IOException {
    try (Storage file = opener.open(location, false)) {
      ByteBuffer magic = ByteBuffer.allocate(4);
      return file.readUpTo(magic, 0) == 4 && magic.getInt(0) == Header.QCOW_MAGIC;
    }
  }

  private static boolean startsWithQcow2Magic(Path file) throws IOException {
    byte[] magic = new byte[4];
    try (InputStream in = Files.newInputStream(file)) {
      return in.readNBytes(magic, 0, 4) == 4
          && ByteBuffer.wrap(magic).getInt() == Header.QCOW_MAGIC;
    }
  }

  /** qemu-img's {@code dump_human_image_check}. */
  private static void human(Qcow2Check.Result r, PrintWriter out) {
    if (r.corruptions() > 0) {
      out.printf(
          "%n%d errors were found on the image.%nData may be corrupted, or further writes to the"
              + " image may corrupt it.%n",
          r.corruptions());
    }
    if (r.leaks() > 0) {
      out.printf(
          "%n%d leaked clusters were found on the image.%nThis means waste of disk space, but no"
              + " harm to data.%n",
          r.leaks());
    }
    if (r.checkErrors() > 0) {
      out.printf("%n%d internal errors have occurred during the check.%n", r.checkErrors());
    }
    if (r.corruptions() == 0 && r.leaks() == 0 && r.checkErrors() == 0) {
      out.println("No errors were found on the image.");
    }
    if (r.totalClusters() != 0 && r.allocatedClusters() != 0) {
      out.printf(
          "%d/%d = %s%% allocated, %s%% fragmented, %s%% compressed clusters%n",
          r.allocatedClusters(),
          r.totalClusters(),
          percent(r.allocatedClusters() * 100.0 / r.totalClusters()),
          percent(r.fragmentedClusters() * 100.0 / r.allocatedClusters()),
          percent(r.compressedClusters() * 100.0 / r.allocatedClusters()));
    }
    if (r.imageEndOffset() > 0) {
      out.printf("Image end offset: %d%n", r.imageEndOffset());
    }
  }

  /** {@code value} as C's {@code %0.2f} prints it: the exact double rounded half to even. */
  private static String percent(double value) {
    return new BigDecimal(value).setScale(2, RoundingMode.HALF_EVEN).toPlainString();
  }

  private static boolean isSummary(String line) {
    return line.isEmpty()
        || line.startsWith("The following inconsistencies")
        || line.startsWith("    ")
        || line.startsWith("Double checking");
  }

  /** qemu-img's {@code ImageCheck} object: optional counters only when not zero. */
  private String json(Qcow2Check.Result r, Qcow2Check.Repair fixed) throws Exception {
    ObjectMapper json = new ObjectMapper();
    ObjectNode o = json.createObjectNode();
    Location location = share.location(argument);
    o.put("filename", location.localPath().map(Path::toString).orElse(location.toString()));
    o.put("format", "qcow2");
    o.put("check-errors", r.checkErrors());
    putIfNotZero(o, "corruptions", r.corruptions());
    putIfNotZero(o, "leaks", r.leaks());
    putIfNotZero(o, "image-end-offset", r.imageEndOffset());
    putIfNotZero(o, "total-clusters", r.totalClusters());
    putIfNotZero(o, "allocated-clusters", r.allocatedClusters());
    putIfNotZero(o, "fragmented-clusters", r.fragmentedClusters());
    putIfNotZero(o, "compressed-clusters", r.compressedClusters());
    if (fixed != null) {
      putIfNotZero(o, "corruptions-fixed", fixed.corruptionsFixed());
      putIfNotZero(o, "leaks-fixed", fixed.leaksFixed());
    }
    return OutputFormat.qemuStyle(json, o);
  }

  private static void putIfNotZero(ObjectNode o, String key, long value) {
    if (value != 0) {
      o.put(key, value);
    }
  }
}
