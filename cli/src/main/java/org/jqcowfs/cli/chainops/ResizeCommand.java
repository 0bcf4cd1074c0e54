package org.jqcowfs.cli.chainops;

import java.io.PrintWriter;
import java.util.concurrent.Callable;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.options.Errors;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.qcow2.Qcow2Image;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs resize}: as {@code qemu-img resize} (QEMU 7.2), preallocation off. */
@Command(
    name = "resize",
    mixinStandardHelpOptions = true,
    description = {
      "Change the virtual disk's size, as qemu-img resize does: SIZE in bytes (suffixes K, M, G,"
          + " T), or +SIZE / -SIZE relative to it (write -- before a negative one). Growing, the"
          + " new range reads as zeros (also over a longer backing file); shrinking needs"
          + " --shrink and deletes what lies past the new end."
    })
public final class ResizeCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(names = "--shrink", description = "Allow a smaller size: the data past it is deleted.")
  boolean shrink;

  @Option(
      names = {"-f", "--format"},
      paramLabel = "qcow2",
      description = "IMAGE's format: qcow2.")
  String format = "qcow2";

  @Option(
      names = {"-q", "--quiet"},
      description = "Print nothing but errors.")
  boolean quiet;

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(index = "0", paramLabel = "IMAGE", description = "A local qcow2 image.")
  String image;

  @Parameters(index = "1", paramLabel = "[+|-]SIZE", description = "The new size, or a change.")
  String size;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    if (!format.equals("qcow2")) {
      return Errors.fail(err, "jqcowfs resizes qcow2 images only");
    }
    String digits = size.startsWith("+") || size.startsWith("-") ? size.substring(1) : size;
    long bytes;
    try {
      bytes = Sizes.parse(digits);
    } catch (IllegalArgumentException e) {
      return Errors.fail(
          err,
          "Invalid image size specified. You may use k, M, G, T, P or E suffixes for kilobytes,"
              + " megabytes, gigabytes, terabytes, petabytes and exabytes.");
    }
    ChainOptions options = share.apply(ChainOptions.DEFAULT);
    try (BackingChain chain =
        share.open(image, options.withHostIo(options.hostIo().withWritable(true)))) {
      Qcow2Image top = (Qcow2Image) chain.top();
      long old = top.size();
      long target = size.startsWith("+") ? old + bytes : size.startsWith("-") ? old - bytes : bytes;
      if (target <= 0) {
        return Errors.fail(err, "New image size must be positive");
      }
      if (target < old && !shrink) {
        err.println("jqcowfs: Use the --shrink option to perform a shrink operation.");
        err.println(
            "jqcowfs: warning: Shrinking an image will delete all data beyond the shrunken image's"
                + " end. Before performing such an operation, make sure there is no important data"
                + " there.");
        err.flush();
        return 1;
      }
      try {
        top.editor().resize(target);
      } catch (IllegalArgumentException e) {
        return Errors.fail(err, e.getMessage());
      }
    } catch (java.io.IOException e) {
      return Errors.fail(err, Errors.message(e));
    }
    if (!quiet) {
      out.println("Image resized.");
      out.flush();
    }
    return 0;
  }
}
