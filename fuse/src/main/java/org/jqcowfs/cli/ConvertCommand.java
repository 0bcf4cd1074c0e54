package org.jqcowfs.cli;

import java.nio.file.Path;
import java.util.concurrent.Callable;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

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
          "Parallel readers (default: ${DEFAULT-VALUE}, twice the CPUs, which is also the most"
              + " used: more would only take turns on the CPUs).")
  int threads = Converter.MAX_THREADS;

  @Option(
      names = {"-l", "--snapshot"},
      paramLabel = "ID|NAME",
      description = "Convert an internal snapshot's view.")
  String snapshot;

  @Option(
      names = {"-p", "--progress"},
      negatable = true,
      description = "Show a progress bar (default: on a terminal).")
  Boolean progress;

  @Mixin ForceShareOption share = new ForceShareOption();

  @Parameters(index = "0", paramLabel = "IMAGE")
  Path image;

  @Parameters(index = "1", paramLabel = "OUT.raw")
  Path out;

  @Override
  public Integer call() throws Exception {
    try (BackingChain chain =
        ChainOpener.open(image, share.apply(ChainOptions.DEFAULT.withSnapshot(snapshot)))) {
      Converter converter = new Converter(chain, threads);
      boolean show = progress != null ? progress : System.console() != null;
      if (!show) {
        converter.convert(out, done -> {});
        return 0;
      }
      try (ProgressBar bar =
          new ProgressBarBuilder()
              .setTaskName("convert")
              .setInitialMax(chain.size())
              .setUnit(" MiB", 1 << 20)
              .setStyle(ProgressBarStyle.ASCII)
              .build()) {
        converter.convert(out, done -> bar.stepTo(done));
      }
    }
    return 0;
  }
}
