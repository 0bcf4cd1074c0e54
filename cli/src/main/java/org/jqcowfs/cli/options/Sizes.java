package org.jqcowfs.cli.options;

import java.util.Locale;

/** Byte counts in qemu-img's human style ({@code size_to_str}: "8 MiB", "1.5 GiB"). */
public final class Sizes {
  private Sizes() {}

  /**
   * Parses a byte count: digits with an optional binary suffix (k, M, G, T; "KiB" and "K" alike).
   *
   * @throws IllegalArgumentException naming the text if it is not a byte count
   */
  public static long parse(String text) {
    String t = text.trim();
    String digits = t.replaceAll("[^0-9].*$", "");
    String unit = t.substring(digits.length()).trim().toLowerCase(Locale.ROOT);
    unit = unit.replaceAll("i?b$", "");
    int shift =
        switch (unit) {
          case "" -> 0;
          case "k" -> 10;
          case "m" -> 20;
          case "g" -> 30;
          case "t" -> 40;
          default -> -1;
        };
    if (digits.isEmpty() || shift < 0 || digits.length() > 15) {
      throw new IllegalArgumentException("'" + text + "' is not a byte count (like 64M or 1G)");
    }
    long v = Long.parseLong(digits);
    if (v > (Long.MAX_VALUE >> shift)) {
      throw new IllegalArgumentException("'" + text + "' is too large");
    }
    return v << shift;
  }

  /** {@code bytes} in qemu-img's human style. */
  public static String human(long bytes) {
    String[] units = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    double v = bytes;
    int i = 0;
    while (v >= 1024 * 0.95 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    String s = String.format(Locale.ROOT, "%.3g", v);
    if (s.contains(".")) {
      s = s.replaceAll("0+$", "").replaceAll("\\.$", "");
    }
    return s + " " + units[i];
  }
}
