package org.jqcowfs.cli;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.io.HostFileOptions;
import picocli.CommandLine;
import picocli.CommandLine.Option;

/**
 * The options every command that opens images has: QEMU's {@code -U}, and the rules for the file
 * names stored in images (backing files, external data files), which are the image maker's words.
 */
final class ImageOptions {
  @Option(
      names = {"-U", "--force-share"},
      description =
          "Open images even when another process (a VM, qemu-img) writes them, and take no"
              + " QEMU-compatible locks. Without it, such an image is refused, and while jqcowfs"
              + " has an image open, QEMU cannot open it for writing.")
  boolean forceShare;

  @Option(
      names = "--allow-dir",
      paramLabel = "DIR",
      description =
          "Let backing and data file names stored in images lead into DIR and below (repeatable);"
              + " by default only the directory of IMAGE and below.")
  List<Path> allowDirs = new ArrayList<>();

  @Option(
      names = "--unsafe-backing",
      description =
          "Follow any backing or data file name an image stores, as QEMU does. Only for images"
              + " you trust: an image can name any file readable to you (/etc/shadow as root).")
  boolean unsafeBacking;

  @Option(
      names = "--probe-backing-format",
      description =
          "Open a backing file whose format is not stored as qcow2 when it starts with the qcow2"
              + " magic (refused by default: a raw disk whose guest wrote a qcow2 header could"
              + " name any file). Only for images you trust.")
  boolean probeBackingFormat;

  // Read policies, each on by default; off only to measure it (docs/performance.md).
  @Option(names = "--no-direct-reads", hidden = true)
  boolean noDirectReads;

  @Option(names = "--no-mapped-reads", hidden = true)
  boolean noMappedReads;

  @Option(names = "--no-linux-aio", hidden = true)
  boolean noLinuxAio;

  /** {@code options} with these choices applied. */
  ChainOptions apply(ChainOptions options) {
    HostFileOptions io = options.hostIo();
    return options
        .withForceShare(forceShare)
        .withNames(allowDirs, unsafeBacking, probeBackingFormat)
        .withHostIo(
            new HostFileOptions(
                io.writable(),
                io.directReads() && !noDirectReads,
                io.mappedReads() && !noMappedReads,
                io.linuxAio() && !noLinuxAio));
  }

  /** picocli converter for {@code --format}: qcow2 or raw, as qemu-img spells them. */
  static final class FormatConverter implements CommandLine.ITypeConverter<ChainOpener.Format> {
    @Override
    public ChainOpener.Format convert(String value) {
      return switch (value) {
        case "qcow2" -> ChainOpener.Format.QCOW2;
        case "raw" -> ChainOpener.Format.RAW;
        default ->
            throw new CommandLine.TypeConversionException(
                "'" + value + "': the formats are qcow2 and raw");
      };
    }
  }
}
