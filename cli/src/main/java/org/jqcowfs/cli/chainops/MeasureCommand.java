package org.jqcowfs.cli.chainops;

import java.io.IOException;
import java.io.PrintWriter;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.chainops.Measure;
import org.jqcowfs.cli.options.CreateOptions;
import org.jqcowfs.cli.options.Errors;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.qcow2.crypto.Luks;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs measure}: as {@code qemu-img measure} (QEMU 7.2). */
@Command(
    name = "measure",
    mixinStandardHelpOptions = true,
    description = {
      "Say how many bytes a new image would take, as qemu-img measure does: for a disk of --size"
          + " bytes, or for the content of IMAGE (with its backing chain) converted to -O qcow2"
          + " (with -o cluster_size=, compat=, refcount_bits=, extended_l2=, preallocation=,"
          + " backing_file=) or raw."
    })
public final class MeasureCommand implements Callable<Integer> {
  @Spec CommandSpec spec;

  @Option(
      names = "--output",
      paramLabel = "human|json",
      description = "human or json (default: human).")
  String output = "human";

  @Option(
      names = "-O",
      paramLabel = "qcow2|raw",
      description = "The new image's format (default: raw).")
  String outputFormat = "raw";

  @Option(
      names = "-o",
      paramLabel = "OPTIONS",
      description = "The new image's creation options, name=value[,...].")
  List<String> options = new ArrayList<>();

  @Option(
      names = "--size",
      paramLabel = "BYTES",
      description = "Measure an empty disk of this size instead of IMAGE.")
  String size;

  @Option(
      names = {"-f", "--format"},
      paramLabel = "qcow2|raw",
      converter = ImageOptions.FormatConverter.class,
      description = "IMAGE's format (default: qcow2; never probed).")
  ChainOpener.Format format = ChainOpener.Format.QCOW2;

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(arity = "0..1", paramLabel = "IMAGE", description = "A local path or a URL.")
  String image;

  @Override
  public Integer call() {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    if (size == null && image == null) {
      return Errors.fail(err, "Either --size N or one filename must be specified.");
    }
    if (size != null && image != null) {
      return Errors.fail(err, "--size N cannot be used together with a filename.");
    }
    if (!outputFormat.equals("qcow2") && !outputFormat.equals("raw")) {
      return Errors.fail(err, "jqcowfs measures qcow2 and raw images, not " + outputFormat);
    }
    int clusterBits = 16;
    int refcountOrder = 4;
    int version = 3;
    boolean extendedL2 = false;
    boolean full = false;
    boolean backing = false;
    Map<String, String> encrypt = new LinkedHashMap<>();
    try {
      for (String group : options) {
        for (String kv : group.split(",")) {
          int eq = kv.indexOf('=');
          String key = eq < 0 ? kv : kv.substring(0, eq);
          String v = eq < 0 ? "on" : kv.substring(eq + 1);
          if (outputFormat.equals("raw") && !key.equals("preallocation")) {
            return Errors.fail(err, "Invalid parameter '" + key + "'");
          }
          if (CreateOptions.ENCRYPT_OPTIONS.contains(key)) {
            encrypt.put(key, v);
            continue;
          }
          switch (key) {
            case "encrypt.key-secret" -> {} // qemu-img wants it; the sizes do not depend on it
            case "cluster_size" -> clusterBits = log2(Sizes.parse(v), key);
            case "refcount_bits" -> refcountOrder = log2(Long.parseLong(v), key);
            case "compat" -> version = CreateOptions.compat(v, "Invalid compatibility level: ");
            case "extended_l2" -> extendedL2 = v.equals("on");
            case "preallocation" -> full = v.equals("full") || v.equals("falloc");
            case "backing_file" -> backing = true;
            case "backing_fmt", "compression_type", "lazy_refcounts" -> {}
            default -> throw new IllegalArgumentException("Invalid parameter '" + key + "'");
          }
        }
      }
      Luks.Spec luks = CreateOptions.encryption(encrypt);
      long bytes = size == null ? 0 : Sizes.parse(size);
      Measure.Result r;
      try (BackingChain in =
          image == null
              ? null
              : share.open(
                  image,
                  share.apply(ChainOptions.DEFAULT.withTopFormat(format)).withoutKeys(true))) {
        r =
            outputFormat.equals("raw")
                ? Measure.raw(in, bytes)
                : Measure.qcow2(
                    in,
                    bytes,
                    clusterBits,
                    refcountOrder,
                    version,
                    extendedL2,
                    full,
                    backing,
                    luks == null ? 0 : Luks.areaBytes(luks));
      }
      if (output.equals("json")) {
        out.println("{");
        if (r.bitmapsBytes() >= 0) {
          out.println("    \"bitmaps\": " + r.bitmapsBytes() + ",");
        }
        out.println("    \"required\": " + r.requiredBytes() + ",");
        out.println("    \"fully-allocated\": " + r.fullyAllocatedBytes());
        out.println("}");
      } else {
        out.println("required size: " + r.requiredBytes());
        out.println("fully allocated size: " + r.fullyAllocatedBytes());
        if (r.bitmapsBytes() >= 0) {
          out.println("bitmaps size: " + r.bitmapsBytes());
        }
      }
      out.flush();
      return 0;
    } catch (IOException | IllegalArgumentException e) {
      return Errors.fail(err, Errors.message(e));
    }
  }

  private static int log2(long v, String name) {
    if (v <= 0 || Long.bitCount(v) != 1) {
      throw new IllegalArgumentException(name + " must be a power of two, not " + v);
    }
    return Long.numberOfTrailingZeros(v);
  }
}
