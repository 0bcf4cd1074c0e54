package org.jqcowfs.cli.chainops;

import java.io.IOException;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.options.CreateOptions;
import org.jqcowfs.cli.options.Errors;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.Qcow2Editor;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.storage.Location;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs amend}: as {@code qemu-img amend} (QEMU 7.2) for qcow2. */
@Command(
    name = "amend",
    mixinStandardHelpOptions = true,
    description = {
      "Change a qcow2 image's format options in place, as qemu-img amend does: compat (0.10 or"
          + " 1.1; a downgrade expands zero clusters), lazy_refcounts (on or off), refcount_bits"
          + " (the refcount structures rewritten), size. -p is accepted; no bar is shown yet.",
    })
public final class AmendCommand implements Callable<Integer> {
  /** Options qemu-img takes only when an image is created. */
  private static final List<String> CREATION_ONLY =
      java.util.stream.Stream.concat(
              java.util.stream.Stream.of(
                  "cluster_size",
                  "preallocation",
                  "extended_l2",
                  "compression_type",
                  "encryption",
                  "encrypt.key-secret"),
              CreateOptions.ENCRYPT_OPTIONS.stream())
          .toList();

  @Spec CommandSpec spec;

  @Option(
      names = {"-f", "--format"},
      paramLabel = "qcow2",
      description = "IMAGE's format: qcow2.")
  String format = "qcow2";

  @Option(names = "-o", paramLabel = "OPTIONS", description = "The options to change.")
  List<String> options = new ArrayList<>();

  @Mixin ProgressOptions verbosity = new ProgressOptions();

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(paramLabel = "IMAGE", description = "A local qcow2 image.")
  String image;

  @Override
  public Integer call() {
    PrintWriter err = spec.commandLine().getErr();
    if (options.isEmpty()) {
      return Errors.fail(err, "Must specify options (-o)");
    }
    if (!format.equals("qcow2")) {
      return Errors.fail(err, "jqcowfs amends qcow2 images only");
    }
    Integer version = null;
    Boolean lazy = null;
    Integer bits = null;
    Long size = null;
    String dataFile = null;
    try {
      for (Map.Entry<String, String> e : CreateOptions.pairs(options).entrySet()) {
        String v = e.getValue();
        switch (e.getKey()) {
          case "compat" -> version = CreateOptions.compat(v, "Unknown compatibility level ");
          case "lazy_refcounts" -> lazy = CreateOptions.onOff(e.getKey(), v);
          case "refcount_bits" -> bits = Integer.parseInt(v);
          case "size" -> size = Sizes.parse(v);
          case "backing_file", "backing_fmt" ->
              throw new IllegalArgumentException(
                  "Cannot amend the backing file\nYou can use 'jqcowfs rebase' instead.");
          case "data_file", "data_file_raw" -> dataFile = e.getKey();
          default ->
              throw new IllegalArgumentException(
                  "Invalid parameter '"
                      + e.getKey()
                      + "'"
                      + (CREATION_ONLY.contains(e.getKey())
                          ? "\nThis option is only supported for image creation"
                          : ""));
        }
      }
      Location at = share.location(image);
      if (at.localPath().isEmpty()) {
        return Errors.fail(err, image + ": an image on a server is read-only");
      }
      ChainOptions writable =
          share.withOpener(
              share.apply(
                  ChainOptions.DEFAULT.withHostIo(HostFileOptions.DEFAULT.withWritable(true))));
      // the chain, for a size change over a backing file (the new range must not show it)
      try (BackingChain chain = ChainOpener.open(at, writable, d -> d == 0)) {
        if (!(chain.top() instanceof Qcow2Image q)) {
          return Errors.fail(err, image + ": not a qcow2 image");
        }
        if (dataFile != null) { // qcow2_amend_options
          return Errors.fail(
              err,
              q.header().dataFileName() == null
                  ? dataFile.replace('_', '-')
                      + " can only be set for images that use an external data file"
                  : "jqcowfs does not change " + dataFile + " yet (qemu-img amend does)");
        }
        q.editor().amend(new Qcow2Editor.Amendment(version, lazy, bits, size));
      }
    } catch (IOException | IllegalArgumentException e) {
      return Errors.fail(err, e instanceof IOException ? Errors.message(e) : e.getMessage());
    }
    return 0;
  }
}
