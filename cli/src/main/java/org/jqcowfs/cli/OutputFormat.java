package org.jqcowfs.cli;

/** The {@code --output} choices, as qemu-img's. */
public enum OutputFormat {
  human,
  json
}
