package org.jqcowfs.cli;

import java.util.Locale;

/** Byte counts in qemu-img's human style ({@code size_to_str}: "8 MiB", "1.5 GiB"). */
final class Sizes {
  private Sizes() {}

  static String human(long bytes) {
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
