package org.jqcowfs.cli.chainops;

import java.io.IOException;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.chainops.ImageCompare;
import org.jqcowfs.cli.options.Errors;
import org.jqcowfs.cli.options.ImageOptions;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs compare}: as {@code qemu-img compare} (QEMU 7.2), exit codes included. */
@Command(
    name = "compare",
    mixinStandardHelpOptions = true,
    description = {
      "Check whether two images (each with its backing chain) read the same, as qemu-img compare"
          + " does: ranges both read as zeros are not read; the first differing 512-byte sector"
          + " is named. Images of different sizes are identical when the rest of the longer one"
          + " reads as zeros, unless --strict."
    },
    exitCodeListHeading = "%nExit status:%n",
    exitCodeList = {
      "0:the images read the same",
      "1:they differ (or, strict, their sizes or block status do)",
      "2:an image could not be opened",
      "3:block status failed",
      "4:a read failed"
    })
public final class CompareCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(
      names = "-f",
      paramLabel = "qcow2|raw",
      converter = ImageOptions.FormatConverter.class,
      description = "IMAGE1's format (default: qcow2; never probed).")
  ChainOpener.Format format1 = ChainOpener.Format.QCOW2;

  @Option(
      names = "-F",
      paramLabel = "qcow2|raw",
      converter = ImageOptions.FormatConverter.class,
      description = "IMAGE2's format (default: qcow2; never probed).")
  ChainOpener.Format format2 = ChainOpener.Format.QCOW2;

  @Option(
      names = {"-s", "--strict"},
      description = "Also fail on different sizes or block status (allocation, zeros).")
  boolean strict;

  @Option(
      names = {"-q", "--quiet"},
      description = "Print nothing but errors; the exit status tells.")
  boolean quiet;

  @Option(
      names = {"-p", "--progress"},
      description = "Show a progress bar.")
  boolean progress;

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(index = "0", paramLabel = "IMAGE1", description = "A local path or a URL.")
  String image1;

  @Parameters(index = "1", paramLabel = "IMAGE2", description = "A local path or a URL.")
  String image2;

  @Override
  public Integer call() {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    BackingChain a = null;
    BackingChain b = null;
    try {
      try {
        a = share.open(image1, share.apply(ChainOptions.DEFAULT.withTopFormat(format1)));
        b = share.open(image2, share.apply(ChainOptions.DEFAULT.withTopFormat(format2)));
      } catch (IOException | RuntimeException e) {
        err.println("jqcowfs: " + Errors.message(e));
        return 2;
      }
      ImageCompare.Result r;
      try (Progress bar = new Progress(progress, "compare", Math.max(a.size(), b.size()))) {
        r = ImageCompare.compare(a, b, strict, bar.consumer());
      }
      String line =
          switch (r.outcome()) {
            case IDENTICAL -> "Images are identical.";
            case CONTENT_MISMATCH -> "Content mismatch at offset " + r.offset() + "!";
            case STATUS_MISMATCH -> "Strict mode: Offset " + r.offset() + " block status mismatch!";
            case SIZE_MISMATCH -> "Strict mode: Image size mismatch!";
          };
      if (!quiet) {
        if (r.sizesDiffer() && r.outcome() != ImageCompare.Outcome.SIZE_MISMATCH) {
          out.println("Warning: Image size mismatch!");
        }
        out.println(line);
      }
      return r.outcome() == ImageCompare.Outcome.IDENTICAL ? 0 : 1;
    } catch (ImageCompare.StatusException e) {
      err.println("jqcowfs: " + e.getMessage());
      return 3;
    } catch (IOException e) {
      err.println("jqcowfs: " + Errors.message(e));
      return 4;
    } finally {
      close(a, err);
      close(b, err);
      out.flush();
      err.flush();
    }
  }

  private static void close(BackingChain chain, PrintWriter err) {
    if (chain != null) {
      try {
        chain.close();
      } catch (IOException e) {
        err.println("jqcowfs: " + Errors.message(e));
      }
    }
  }
}
