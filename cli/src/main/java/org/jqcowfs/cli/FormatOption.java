package org.jqcowfs.cli;

import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.options.ImageOptions;
import picocli.CommandLine.Option;

/**
 * {@code -f, --format qcow2|raw}, as qemu-img spells it, for the one-shot commands (info, map,
 * convert); {@code mount} spells it {@code --format} alone, its {@code -f} being --foreground.
 */
final class FormatOption {
  @Option(
      names = {"-f", "--format"},
      paramLabel = "qcow2|raw",
      converter = ImageOptions.FormatConverter.class,
      description = "The image's format (default: qcow2; never probed).")
  ChainOpener.Format format = ChainOpener.Format.QCOW2;

  /** {@code options} with this format for the top image. */
  ChainOptions apply(ChainOptions options) {
    return options.withTopFormat(format);
  }
}
