package org.jqcowfs.cli.chainops;

import picocli.CommandLine.Option;

/** {@code -p} and {@code -q} of the chain operations that copy data, as qemu-img spells them. */
final class ProgressOptions {
  @Option(
      names = {"-p", "--progress"},
      description = "Show a progress bar.")
  boolean progress;

  @Option(
      names = {"-q", "--quiet"},
      description = "Print nothing but errors.")
  boolean quiet;

  /** The bar {@code -p} asks for (none with {@code -q}), over {@code guestBytes}. */
  Progress bar(String task, long guestBytes) {
    return new Progress(progress && !quiet, task, guestBytes);
  }
}
