package org.jqcowfs.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.concurrent.atomic.AtomicInteger;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.image.Extent;
import org.jqcowfs.qcow2.Qcow2Image;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs map}: chain-wide block status, as {@code qemu-img map}. */
@Command(
    name = "map",
    mixinStandardHelpOptions = true,
    description = {
      "Show where each range of the virtual disk comes from, as qemu-img map does.",
      "A damaged range (a bad L1/L2 entry) is reported on stderr and left out; the rest is"
          + " mapped, and the exit status is 1."
    })
final class MapCommand implements Callable<Integer> {
  @Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(names = "--output", description = "human or json (default: human)")
  OutputFormat output = OutputFormat.human;

  @Option(
      names = {"-l", "--snapshot"},
      paramLabel = "ID|NAME",
      description = "Map a snapshot.")
  String snapshot;

  @Option(
      names = {"-b", "--bitmap"},
      paramLabel = "NAME",
      description =
          "Instead, list which ranges the persistent dirty bitmap NAME of IMAGE marks dirty"
              + " (tiling the disk; JSON objects with start, length and dirty), as qemu-nbd -B"
              + " NAME exports them. A bitmap in use (inconsistent) is refused.")
  String bitmap;

  @Mixin FormatOption format = new FormatOption();

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(
      paramLabel = "IMAGE",
      description = "A local path, or an http://, https:// or s3://BUCKET/KEY URL.")
  String image;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    PrintWriter err = spec.commandLine().getErr();
    AtomicInteger damaged = new AtomicInteger();
    try (BackingChain chain =
        share.open(image, share.apply(format.apply(ChainOptions.DEFAULT.withSnapshot(snapshot))))) {
      if (bitmap != null) {
        return dirtyMap(chain, out);
      }
      List<Extent> map =
          chain.map(
              0,
              chain.size(),
              d -> {
                damaged.incrementAndGet();
                err.println(
                    "jqcowfs: "
                        + d.getMessage()
                        + "; guest range "
                        + d.rangeText()
                        + " left out of the map");
              });
      if (output == OutputFormat.json) {
        out.print("[");
        for (int i = 0; i < map.size(); i++) {
          out.print(json(map.get(i)));
          out.print(i + 1 < map.size() ? ",\n" : "]\n");
        }
        if (map.isEmpty()) {
          out.print("]\n");
        }
      } else {
        out.printf(
            Locale.ROOT,
            "%-16s%-16s%-16s%-12s%s%n",
            "Offset",
            "Length",
            "Mapped to",
            "Kind",
            "File");
        for (Extent e : map) {
          if (e.data()) {
            out.printf(
                Locale.ROOT,
                "%-16s%-16s%-16s%-12s%s%n",
                "0x" + Long.toHexString(e.start()),
                "0x" + Long.toHexString(e.length()),
                e.hostOffset() >= 0 ? "0x" + Long.toHexString(e.hostOffset()) : "-",
                e.compressed() ? "compressed" : e.zero() ? "zero" : "data",
                e.hostFile() != null ? e.hostFile() : chain.layers().get(e.depth()).location());
          }
        }
      }
    }
    out.flush();
    err.flush();
    return damaged.get() == 0 ? 0 : 1;
  }

  /** {@code --bitmap}: the top image's bitmap as clean and dirty ranges, streamed. */
  private int dirtyMap(BackingChain chain, PrintWriter out) throws IOException {
    if (!(chain.layers().get(0) instanceof Qcow2Image top)) {
      throw new IllegalArgumentException("--bitmap: " + image + " is not a qcow2 image");
    }
    boolean json = output == OutputFormat.json;
    if (json) {
      out.print("[");
    } else {
      out.printf(Locale.ROOT, "%-16s%-16s%s%n", "Offset", "Length", "Dirty");
    }
    boolean[] first = {true};
    top.dirtyExtents(
        bitmap,
        (start, length, dirty) -> {
          if (json) {
            out.print(first[0] ? "" : ",\n");
            out.print(
                "{ \"start\": "
                    + start
                    + ", \"length\": "
                    + length
                    + ", \"dirty\": "
                    + dirty
                    + "}");
          } else {
            out.printf(
                Locale.ROOT,
                "%-16s%-16s%s%n",
                "0x" + Long.toHexString(start),
                "0x" + Long.toHexString(length),
                dirty);
          }
          first[0] = false;
        });
    if (json) {
      out.print("]\n");
    }
    out.flush();
    return 0;
  }

  /** One object in qemu-img's JSON map format (QEMU >= 8.2 keys, with "compressed"). */
  static String json(Extent e) {
    StringBuilder b = new StringBuilder();
    b.append("{ \"start\": ").append(e.start());
    b.append(", \"length\": ").append(e.length());
    b.append(", \"depth\": ").append(e.depth());
    b.append(", \"present\": ").append(e.allocated());
    b.append(", \"zero\": ").append(e.zero());
    b.append(", \"data\": ").append(e.data());
    b.append(", \"compressed\": ").append(e.compressed());
    if (e.hostOffset() >= 0) {
      b.append(", \"offset\": ").append(e.hostOffset());
    }
    return b.append("}").toString();
  }
}
