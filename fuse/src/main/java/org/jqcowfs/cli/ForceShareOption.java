package org.jqcowfs.cli;

import org.jqcowfs.chain.ChainOptions;
import picocli.CommandLine.Option;

/** {@code -U, --force-share}, as qemu-img's: the option every command that opens images has. */
final class ForceShareOption {
  @Option(
      names = {"-U", "--force-share"},
      description =
          "Open images even when another process (a VM, qemu-img) writes them, and take no"
              + " QEMU-compatible locks. Without it, such an image is refused, and while jqcowfs"
              + " has an image open, QEMU cannot open it for writing.")
  boolean forceShare;

  /** {@code options} with this choice applied. */
  ChainOptions apply(ChainOptions options) {
    return options.withForceShare(forceShare);
  }
}
