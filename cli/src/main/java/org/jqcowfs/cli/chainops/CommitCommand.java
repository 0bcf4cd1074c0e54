package org.jqcowfs.cli.chainops;

import java.io.IOException;
import java.io.PrintWriter;
import java.util.concurrent.Callable;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.chainops.Commit;
import org.jqcowfs.cli.options.Errors;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.image.Image;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.storage.Location;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs commit}: as {@code qemu-img commit} (QEMU 7.2). */
@Command(
    name = "commit",
    mixinStandardHelpOptions = true,
    description = {
      "Write what an overlay holds into its backing file, as qemu-img commit does, then empty the"
          + " overlay (it reads as before, through the backing file) unless -d. With -b BASE"
          + " (deeper in the chain; relative to IMAGE's directory) the layers above BASE are"
          + " written into it and -d is implied: the layers between are no longer valid. A base"
          + " smaller than IMAGE is grown first."
    })
public final class CommitCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(
      names = {"-f", "--format"},
      paramLabel = "qcow2",
      description = "IMAGE's format: qcow2.")
  String format = "qcow2";

  @Option(
      names = "-b",
      paramLabel = "BASE",
      description = "The layer to commit into (default: IMAGE's backing file).")
  String base;

  @Option(names = "-d", description = "Keep IMAGE's data (do not empty it).")
  boolean keep;

  @Mixin ProgressOptions verbosity = new ProgressOptions();

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(paramLabel = "IMAGE", description = "A local qcow2 image with a backing file.")
  String image;

  @Override
  public Integer call() {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    if (!format.equals("qcow2")) {
      return Errors.fail(err, "jqcowfs commits qcow2 images only");
    }
    ChainOptions options = share.apply(ChainOptions.DEFAULT);
    try {
      int depth;
      long size;
      long baseSize;
      Location baseAt;
      try (BackingChain chain = share.open(image, options)) {
        if (chain.layers().size() < 2) {
          return Errors.fail(err, "Image does not have a backing file");
        }
        depth = base == null ? 1 : depthOf(chain, base);
        if (depth < 0) {
          return Errors.fail(
              err, "Did not find '" + base + "' in the backing chain of '" + image + "'");
        }
        size = chain.size();
        baseAt = chain.layers().get(depth).location();
        baseSize = chain.layers().get(depth).size();
        if (chain.layers().get(depth).size() < size
            && !(chain.layers().get(depth) instanceof Qcow2Image)) {
          return Errors.fail(err, baseAt + ": a raw base smaller than the image is not grown");
        }
      }
      boolean empty = base == null && !keep;
      ChainOptions writable = options.withHostIo(options.hostIo().withWritable(true));
      if (baseSize < size) { // commit_run grows the base first
        try (BackingChain below = share.open(baseAt, writable)) {
          ((Qcow2Image) below.top()).editor().resize(size);
        }
      }
      final int at = depth;
      try (BackingChain chain =
              ChainOpener.open(
                  share.location(image),
                  share.withOpener(writable),
                  d -> d == at || (d == 0 && empty));
          Progress bar = verbosity.bar("commit", size)) {
        Commit.commit(chain, depth, empty, bar.consumer());
      }
    } catch (IOException | IllegalArgumentException e) {
      return Errors.fail(err, Errors.message(e));
    }
    if (!verbosity.quiet) {
      out.println("Image committed.");
      out.flush();
    }
    return 0;
  }

  /** The depth of the layer {@code name} (relative to the top's directory) names, or -1. */
  private static int depthOf(BackingChain chain, String name) throws IOException {
    Location wanted = chain.top().location().resolve(name);
    if (!wanted.exists()) {
      return -1;
    }
    Location real = wanted.real();
    for (int d = 1; d < chain.layers().size(); d++) {
      Image layer = chain.layers().get(d);
      if (layer.location().real().equals(real)) {
        return d;
      }
    }
    return -1;
  }
}
