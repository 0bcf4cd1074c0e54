package org.jqcowfs.cli.chainops;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.chainops.Rebase;
import org.jqcowfs.cli.options.Errors;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import org.jqcowfs.remote.RemoteOpener;
import org.jqcowfs.storage.Location;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs rebase}: as {@code qemu-img rebase} (QEMU 7.2), safe and unsafe. */
@Command(
    name = "rebase",
    mixinStandardHelpOptions = true,
    description = {
      "Give a qcow2 image another backing file, as qemu-img rebase does. Safe (the default), the"
          + " image reads the same afterwards: where the old and the new backing file differ,"
          + " under ranges the image does not hold, the old bytes are copied into it first; then"
          + " its header names the new file. -b \"\" flattens it (it holds all it read from its"
          + " backing chain). With -u only the header changes (the old backing file need not"
          + " exist): for a backing file that was renamed or moved."
    })
public final class RebaseCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(
      names = {"-f", "--format"},
      paramLabel = "qcow2",
      description = "IMAGE's format: qcow2 (the only one with a backing file).")
  String format = "qcow2";

  @Option(
      names = "-b",
      paramLabel = "BACKING",
      description =
          "The new backing file, relative to IMAGE's directory unless absolute, or \"\" for none.")
  String backing;

  @Option(
      names = "-F",
      paramLabel = "qcow2|raw",
      description = "The new backing file's format, stored in the header (required with -b NAME).")
  String backingFormat;

  @Option(
      names = {"-u", "--unsafe"},
      description = "Only rewrite the header; copy nothing.")
  boolean unsafe;

  @Mixin ProgressOptions verbosity = new ProgressOptions();

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(paramLabel = "IMAGE", description = "A local qcow2 image.")
  String image;

  @Override
  public Integer call() throws IOException {
    PrintWriter err = spec.commandLine().getErr();
    if (backing == null && !unsafe) {
      return Errors.fail(err, "Must specify backing file (-b) or use unsafe mode (-u)");
    }
    if (!format.equals("qcow2")) {
      return Errors.fail(
          err, "Could not change the backing file of '" + image + "': not a qcow2 image");
    }
    String name = backing == null || backing.isEmpty() ? null : backing;
    if (name != null && backingFormat == null) {
      return Errors.fail(
          err,
          "Could not change the backing file to '" + name + "': backing format must be specified");
    }
    String storedFormat = name == null ? null : backingFormat;
    if (unsafe) {
      try (Qcow2Image top =
          Qcow2Image.open(
              Path.of(image),
              Qcow2Options.DEFAULT.withHostIo(HostFileOptions.DEFAULT.withWritable(true)))) {
        Rebase.rebaseUnsafe(top, name, storedFormat);
      } catch (IllegalArgumentException e) {
        return Errors.fail(
            err, "Could not change the backing file to '" + name + "': " + e.getMessage());
      }
      return 0;
    }
    ChainOpener.Format newFormat = null;
    if (name != null) {
      newFormat = new ImageOptions.FormatConverter().convert(backingFormat);
    }
    ChainOptions options = share.apply(ChainOptions.DEFAULT);
    ChainOptions writable = options.withHostIo(options.hostIo().withWritable(true));
    try (BackingChain chain = share.open(image, writable)) {
      BackingChain newChain = null;
      if (name != null) {
        Location at = RemoteOpener.url(name).orElseGet(() -> chain.top().location().resolve(name));
        try {
          newChain = share.open(at, options.withTopFormat(newFormat));
        } catch (IOException | RuntimeException e) {
          return Errors.fail(
              err, "Could not open new backing file '" + name + "': " + Errors.message(e));
        }
      }
      try (BackingChain below = newChain;
          Progress bar = verbosity.bar("rebase", chain.size())) {
        Rebase.rebase(chain, below, name, storedFormat, bar.consumer());
      } catch (IllegalArgumentException e) {
        return Errors.fail(
            err, "Could not change the backing file to '" + name + "': " + e.getMessage());
      }
    }
    return 0;
  }
}
