package org.jqcowfs.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicInteger;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.convert.Converter;
import org.jqcowfs.image.DamagedRangeException;
import org.jqcowfs.remote.RemoteStats;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs convert}: the virtual disk as a sparse raw file. */
@Command(
    name = "convert",
    mixinStandardHelpOptions = true,
    description =
        "Write the virtual disk (with its backing chain) to a raw file, holes left as holes;"
            + " the job of qemu-img convert -O raw.")
final class ConvertCommand implements Callable<Integer> {
  @Option(
      names = "-m",
      paramLabel = "THREADS",
      description =
          "Parallel readers (default: twice the CPUs, which is also the most used: more would only"
              + " take turns on the CPUs; for a URL 16, also the most: they wait on round trips).")
  Integer threads;

  @Option(
      names = {"-l", "--snapshot"},
      paramLabel = "ID|NAME",
      description = "Convert an internal snapshot's view.")
  String snapshot;

  @Option(
      names = {"-p", "--progress"},
      negatable = true,
      description =
          "Show a progress bar: bytes written, and from a URL bytes fetched (default: on a terminal).")
  Boolean progress;

  @Mixin FormatOption format = new FormatOption();

  @Mixin ImageOptions share = new ImageOptions();

  @Option(
      names = "--salvage",
      description =
          "Write zeros where the image is damaged (a bad L1/L2 entry or compressed cluster),"
              + " list each such range on stderr, and finish (exit status 1), as qemu-img convert"
              + " --salvage; without it, the first damaged range fails the convert.")
  boolean salvage;

  @Spec CommandSpec spec;

  @Parameters(
      index = "0",
      paramLabel = "IMAGE",
      description = "A local path, or an http://, https:// or s3://BUCKET/KEY URL.")
  String image;

  @Parameters(index = "1", paramLabel = "OUT.raw")
  Path out;

  @Override
  public Integer call() throws Exception {
    try (BackingChain chain =
        share.open(image, share.apply(format.apply(ChainOptions.DEFAULT.withSnapshot(snapshot))))) {
      PrintWriter err = spec.commandLine().getErr();
      AtomicInteger damaged = new AtomicInteger();
      BackingChain.DamageHandler report =
          d -> {
            damaged.incrementAndGet();
            synchronized (err) {
              err.println(
                  "jqcowfs: convert --salvage: zeros written for guest range "
                      + d.rangeText()
                      + ": "
                      + d.getMessage());
              err.flush();
            }
          };
      int m =
          threads != null
              ? threads
              : Converter.remote(chain) ? Converter.MAX_REMOTE_THREADS : Converter.MAX_THREADS;
      Converter converter = new Converter(chain, m, salvage ? report : null);
      boolean show = progress != null ? progress : System.console() != null;
      try {
        if (!show) {
          converter.convert(out, done -> {});
        } else {
          try (ProgressBar bar =
              new ProgressBarBuilder()
                  .setTaskName("convert")
                  .setInitialMax(chain.size())
                  .setUnit(" MiB", 1 << 20)
                  .setStyle(ProgressBarStyle.ASCII)
                  .build()) {
            RemoteStats remote = share.remoteStats();
            converter.convert(
                out,
                done -> {
                  bar.stepTo(done);
                  if (remote != null && remote.requests() > 0) { // what the server sent so far
                    bar.setExtraMessage(" fetched " + Sizes.human(remote.bytesFetched()));
                  }
                });
          }
        }
      } catch (DamagedRangeException d) {
        throw new IOException(
            d.getMessage()
                + "; guest range "
                + d.rangeText()
                + " cannot be read (--salvage writes zeros there and goes on)",
            d);
      }
      return damaged.get() == 0 ? 0 : 1;
    }
  }
}
