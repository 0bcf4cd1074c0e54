package org.jqcowfs.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicInteger;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.chainops.Progress;
import org.jqcowfs.cli.options.CreateOptions;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.convert.Converter;
import org.jqcowfs.convert.Qcow2Target;
import org.jqcowfs.image.DamagedRangeException;
import org.jqcowfs.image.Image;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.Qcow2Create;
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
    description = {
      "Write the virtual disk (with its backing chain) to a raw file, holes left as holes (the job"
          + " of qemu-img convert -O raw), or with -O qcow2 to a new qcow2 image: flattened, or"
          + " with -B only what IMAGE's top layer holds, over BACKING; -c compresses every"
          + " cluster, on all cores.",
      "OPTIONS for qcow2, comma-separated as qemu-img's: cluster_size, compat, extended_l2,"
          + " compression_type (zlib or zstd), lazy_refcounts, refcount_bits."
    })
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

  @Option(
      names = {"-q", "--quiet"},
      description = "Print nothing but errors (no progress bar).")
  boolean quiet;

  @Mixin FormatOption format = new FormatOption();

  @Option(
      names = "-O",
      paramLabel = "FMT",
      description = "The output format: raw (the default) or qcow2.")
  String outputFormat = "raw";

  @Option(
      names = "-c",
      description = "Compress every cluster of the qcow2 output (compression_type: zlib or zstd).")
  boolean compress;

  @Option(names = "-o", paramLabel = "OPTIONS", description = "qcow2 output options.")
  List<String> options = new ArrayList<>();

  @Option(
      names = "-B",
      paramLabel = "BACKING",
      description =
          "The qcow2 output's backing file (stored as given; relative names: to OUT's directory);"
              + " only what IMAGE's top layer holds is written.")
  String backing;

  @Option(
      names = "--target-key-file",
      paramLabel = "FILE",
      description =
          "The passphrase of a qcow2 output made with -o encrypt.format=luks: FILE's bytes, as"
              + " QEMU's --object secret,file= reads them (qemu-img: -o encrypt.key-secret=ID).")
  Path targetKeyFile;

  @Option(names = "-F", paramLabel = "FMT", description = "BACKING's format: qcow2 or raw.")
  String backingFormat;

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

  @Parameters(index = "1", paramLabel = "OUT")
  Path out;

  @Override
  public Integer call() throws Exception {
    boolean qcow2 =
        switch (outputFormat) {
          case "raw" -> false;
          case "qcow2" -> true;
          default ->
              throw new IllegalArgumentException(
                  "output format '" + outputFormat + "': raw or qcow2");
        };
    if (!qcow2 && compress) {
      throw new IllegalArgumentException("Compression not supported for this file format");
    }
    if (!qcow2 && (backing != null || !options.isEmpty())) {
      throw new IllegalArgumentException("-B and -o need -O qcow2");
    }
    if (backing != null && backingFormat == null) {
      throw new IllegalArgumentException(
          "Backing file specified without backing format (use -F qcow2 or -F raw)");
    }
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
      boolean show = !quiet && (progress != null ? progress : System.console() != null);
      try {
        if (qcow2) {
          convertToQcow2(chain, converter, show);
        } else if (!show) {
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

  /**
   * Creates OUT as a qcow2 image of the chain's size (over {@code -B} if given) and converts into
   * it; OUT is replaced if it exists, never when it is a layer of the source.
   */
  private void convertToQcow2(BackingChain chain, Converter converter, boolean show)
      throws IOException {
    Map<String, String> o = CreateOptions.pairs(options);
    String backingFile = o.containsKey("backing_file") ? o.remove("backing_file") : backing;
    String backingFmt = o.containsKey("backing_fmt") ? o.remove("backing_fmt") : backingFormat;
    CreateOptions.Parsed parsed = CreateOptions.image(o, chain.size(), backingFile, backingFmt);
    if (!parsed.preallocation().equals("off") || parsed.image().dataFile() != null) {
      throw new IllegalArgumentException("convert -O qcow2 takes no preallocation or data_file");
    }
    if (parsed.encryption() != null && compress) {
      throw new IllegalArgumentException(
          "Compression and encryption not supported at the same time");
    }
    if ((parsed.encryption() != null) != (targetKeyFile != null)) {
      throw new IllegalArgumentException(
          targetKeyFile == null
              ? "encrypt.format=luks needs the passphrase: --target-key-file"
              : "--target-key-file is for -o encrypt.format=luks");
    }
    if (Files.exists(out)) {
      Path real = out.toRealPath();
      for (Image layer : chain.layers()) {
        Optional<Path> p = layer.location().localPath();
        if (p.isPresent() && Files.exists(p.get()) && p.get().toRealPath().equals(real)) {
          throw new IllegalArgumentException(out + " is a layer of the source: not overwritten");
        }
      }
      Files.delete(out); // qemu-img convert creates the image anew
    }
    Qcow2Create.create(out, parsed.image());
    ChainOptions writable =
        share.withOpener(
            ChainOptions.DEFAULT.withHostIo(HostFileOptions.DEFAULT.withWritable(true)));
    byte[] key = targetKeyFile != null ? ImageOptions.readKeyFile(targetKeyFile) : null;
    try {
      if (key != null) {
        Qcow2Create.encrypt(out, parsed.encryption(), key);
        writable = writable.withPassphrases(List.of(key));
      }
      try (BackingChain target =
              ChainOpener.open(share.location(out.toString()), writable, d -> d == 0);
          Progress bar = new Progress(show, "convert", chain.size())) {
        converter.convert(new Qcow2Target(target, compress), bar.consumer());
        target.flush();
      }
    } finally {
      if (key != null) {
        java.util.Arrays.fill(key, (byte) 0);
      }
    }
  }
}
