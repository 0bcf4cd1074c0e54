package org.jqcowfs.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.qcow2.Qcow2Create;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import org.jqcowfs.remote.HttpLocation;
import org.jqcowfs.remote.RemoteOpener;
import org.jqcowfs.storage.Location;

/** The overlays of {@code mount --overlay} and {@code --scratch}. */
final class Overlays {
  private Overlays() {}

  /**
   * Creates {@code overlay}, a qcow2 image as {@code qemu-img create -b IMAGE -F FMT} makes it (the
   * backing name relative to the overlay's directory for a local image, the URL for a remote one,
   * the format recorded, IMAGE's virtual size), or checks that the existing one names {@code image}
   * as its backing file.
   *
   * @param options how to open {@code image} and its chain (with the opener of URLs)
   * @throws IllegalArgumentException if {@code overlay} exists and names another backing file
   * @throws IOException if {@code image} cannot be opened or the overlay cannot be written
   */
  static void createOrReuse(
      Path overlay, Location image, ChainOpener.Format format, ChainOptions options)
      throws IOException {
    Path dir = overlay.toAbsolutePath().getParent();
    if (Files.exists(overlay)) {
      String name;
      // its header only: an encrypted overlay opens without its key here
      try (Qcow2Image o = Qcow2Image.open(overlay, Qcow2Options.DEFAULT.withoutKey(true))) {
        name = o.backingFileName().orElse(null);
      }
      if (name == null || !names(dir, name, image)) {
        throw new IllegalArgumentException(
            overlay
                + " exists and its backing file is "
                + (name == null ? "none" : "'" + name + "'")
                + ", not "
                + image
                + "; give another --overlay file");
      }
      return;
    }
    long size;
    try (BackingChain chain = ChainOpener.open(image, options.withTopFormat(format))) {
      size = chain.size();
    }
    String backingName =
        image.localPath().isPresent()
            ? dir.relativize(image.localPath().get().toAbsolutePath().normalize()).toString()
            : url(image);
    Qcow2Create.Options o = Qcow2Create.Options.defaults(size);
    Qcow2Create.create(
        overlay,
        new Qcow2Create.Options(
            o.virtualSize(),
            o.clusterBits(),
            o.version(),
            o.extendedL2(),
            o.zstd(),
            o.lazyRefcounts(),
            o.refcountOrder(),
            backingName,
            format == ChainOpener.Format.RAW ? "raw" : "qcow2",
            null,
            false));
  }

  /** Whether {@code name}, stored in an overlay in {@code dir}, names {@code image}. */
  private static boolean names(Path dir, String name, Location image) throws IOException {
    if (image.localPath().isEmpty()) {
      try {
        return RemoteOpener.parse(name).equals(image);
      } catch (IllegalArgumentException e) {
        return false;
      }
    }
    Path p = dir.resolve(name);
    return Files.exists(p) && p.toRealPath().equals(image.localPath().get().toRealPath());
  }

  /** A remote image's URL as the user gave it (user information and query kept: it must open). */
  private static String url(Location image) {
    return image instanceof HttpLocation h ? h.uri().toString() : image.toString();
  }
}
