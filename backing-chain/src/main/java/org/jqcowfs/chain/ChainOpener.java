package org.jqcowfs.chain;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.LinkOption;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.jqcowfs.image.Image;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.image.NamePolicy;
import org.jqcowfs.io.Closeables;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.ImageLock;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.raw.RawImage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Opens an image with its whole backing chain. The top image is qcow2 unless the options say raw
 * (never probed). Backing names resolve relative to the directory of the image that names them, and
 * are followed only inside the allowed directories ({@link NamePolicy}: the top image's directory
 * and below, plus {@link ChainOptions#allowDirs}), at every layer, external data files included.
 * The backing format comes from header extension 0xE2792ACA (qcow2 or raw); without it, a file
 * without the qcow2 magic is read as raw with a warning, and one with it is refused unless {@link
 * ChainOptions#probeBackingFormat} (a raw disk whose guest wrote a qcow2 header would otherwise
 * reach host files through that header's backing name: CVE-2008-2004). Refused at open, naming the
 * files: a cycle, a missing backing file, a directory or FIFO, a {@code json:} or protocol name, an
 * unknown backing format, a chain deeper than the cap. Unless told to force sharing, every file
 * (images and external data files) is locked as QEMU locks a reader, and a file that another
 * process writes is refused ({@link ImageLock}). With {@link HostFileOptions#writable} the top
 * layer alone is opened for writing and locked as QEMU locks a writer; the layers below stay
 * read-only.
 */
public final class ChainOpener {
  private static final Logger LOG = LoggerFactory.getLogger(ChainOpener.class);

  /** The formats jqcowfs reads. */
  public enum Format {
    QCOW2,
    RAW
  }

  private ChainOpener() {}

  /** Opens {@code top} (qcow2) and its chain with default options. */
  public static BackingChain open(Path top) throws IOException {
    return open(top, ChainOptions.DEFAULT);
  }

  /**
   * Opens {@code top} (in the format {@link ChainOptions#topFormat} says) and every backing file
   * below it.
   *
   * @throws ImageFormatException if a layer is refused; the message names the file and the name
   *     that led to it (a name outside the allowed directories, a format-less backing file with the
   *     qcow2 magic, a top image without it when qcow2 is expected)
   * @throws IOException if a file cannot be opened or read
   */
  public static BackingChain open(Path top, ChainOptions options) throws IOException {
    List<Image> layers = new ArrayList<>();
    List<ImageLock> locks = new ArrayList<>();
    List<Path> seen = new ArrayList<>();
    try {
      Path current = top;
      Format format = options.topFormat();
      checkOpenable(top, null);
      if (format == Format.QCOW2) {
        checkQcow2Magic(top);
      }
      NamePolicy names = namePolicy(top, options);
      String snapshot = options.snapshot();
      Path namedBy = null;
      while (current != null) {
        checkOpenable(current, namedBy);
        Path real = current.toRealPath();
        if (seen.contains(real)) {
          throw new ImageFormatException(
              namedBy, "backing chain cycle: " + chainText(seen) + " -> " + real);
        }
        if (layers.size() > options.maxDepth()) {
          throw new ImageFormatException(
              top, "backing chain deeper than the cap of " + options.maxDepth() + " layers");
        }
        seen.add(real);
        // Only the top layer is written; a qcow2 top takes the writer's lock itself.
        boolean writer = layers.isEmpty() && options.hostIo().writable();
        HostFileOptions io = options.hostIo().withWritable(writer);
        if (writer && options.forceShare()) {
          throw new ImageFormatException(current, "an image opened for writing cannot be shared");
        }
        if (writer && format == Format.RAW) {
          locks.add(ImageLock.acquireForWrite(current));
        } else if (!options.forceShare() && !writer) {
          locks.add(ImageLock.acquire(current));
        }
        if (format == Format.RAW) {
          if (snapshot != null) {
            throw new ImageFormatException(current, "a raw image has no snapshots");
          }
          layers.add(RawImage.open(current, io));
          break;
        }
        Qcow2Image image =
            Qcow2Image.open(current, new Qcow2Options(options.l2CacheBytes(), snapshot, names, io));
        layers.add(image);
        if (!options.forceShare() && !image.dataFilePath().equals(image.path())) {
          locks.add(ImageLock.acquire(image.dataFilePath()));
        }
        snapshot = null;
        String name = image.backingFileName().orElse(null);
        if (name == null) {
          break;
        }
        Path next = names.resolve(current, name, "backing file");
        format = backingFormat(image, next, options.probeBackingFormat());
        namedBy = current;
        current = next;
      }
      return new BackingChain(layers, locks);
    } catch (IOException | RuntimeException e) {
      try {
        Closeables.closeAll(layers, locks);
      } catch (IOException suppressed) {
        e.addSuppressed(suppressed);
      }
      throw e;
    }
  }

  private static String chainText(List<Path> seen) {
    StringBuilder b = new StringBuilder();
    for (Path p : seen) {
      b.append(b.length() == 0 ? "" : " -> ").append(p);
    }
    return b.toString();
  }

  /** The top image's directory and the extra allowed ones, or QEMU's follow-anything. */
  private static NamePolicy namePolicy(Path top, ChainOptions options) throws IOException {
    if (options.unsafeBacking()) {
      return NamePolicy.UNSAFE;
    }
    List<Path> dirs = new ArrayList<>();
    dirs.add(NamePolicy.directoryOf(top));
    dirs.addAll(options.allowDirs());
    return NamePolicy.confinedTo(dirs);
  }

  /** Refuses a top image that should be qcow2 but lacks the magic (an empty file too). */
  private static void checkQcow2Magic(Path top) throws IOException {
    byte[] magic = magic(top);
    if (!isQcow2Magic(magic)) {
      String found =
          magic.length == 0
              ? "the file is empty"
              : "magic 0x" + HexFormat.of().formatHex(magic) + ", not QFI\\xfb (0x514649fb)";
      throw new ImageFormatException(
          top,
          "not a qcow2 image ("
              + found
              + "); if it is a raw disk image, say so with -f raw (--format raw)");
    }
  }

  private static Format backingFormat(Qcow2Image image, Path next, boolean probeQcow2)
      throws IOException {
    String stored = image.backingFormat().orElse(null);
    if (stored == null) {
      Format probed = probe(next, image.path());
      if (probed == Format.QCOW2 && !probeQcow2) {
        throw new ImageFormatException(
            image.path(),
            "backing file '"
                + image.backingFileName().orElse("")
                + "' ("
                + next
                + ") has no stored format and starts with the qcow2 magic; it is not probed"
                + " into qcow2 (a raw disk whose guest wrote a qcow2 header would reach other"
                + " files). Record its format with 'qemu-img rebase -u -F qcow2 -b "
                + image.backingFileName().orElse("")
                + " "
                + image.path()
                + "', or pass --probe-backing-format if the image is trusted");
      }
      LOG.warn(
          "{}: no backing format stored for '{}'; probed as {}",
          image.path(),
          image.backingFileName().orElse(""),
          probed.name().toLowerCase(java.util.Locale.ROOT));
      return probed;
    }
    return switch (stored) {
      case "qcow2" -> Format.QCOW2;
      case "raw" -> Format.RAW;
      default ->
          throw new ImageFormatException(
              image.path(), "backing format '" + stored + "' is not supported (qcow2 or raw)");
    };
  }

  /**
   * Refuses, before any blocking open, a missing file, a directory, a FIFO or a socket.
   *
   * @param namedBy the image whose backing name led here, or null for the top image
   */
  static void checkOpenable(Path p, Path namedBy) throws IOException {
    String who = namedBy == null ? "" : " (backing file of " + namedBy + ")";
    if (!Files.exists(p)) {
      throw new java.nio.file.NoSuchFileException(p.toString(), null, "does not exist" + who);
    }
    if (Files.isDirectory(p)) {
      throw new IOException(p + ": is a directory" + who);
    }
    if (!Files.isRegularFile(p)) {
      Object mode = Files.getAttribute(p, "unix:mode", LinkOption.NOFOLLOW_LINKS);
      boolean block = mode instanceof Integer m && (m & 0170000) == 0060000;
      if (!block && !Files.isRegularFile(p.toRealPath())) {
        throw new IOException(p + ": not a regular file or block device" + who);
      }
    }
  }

  /** Probes a file's format by its first 4 bytes. */
  static Format probe(Path p, Path namedBy) throws IOException {
    checkOpenable(p, namedBy);
    return isQcow2Magic(magic(p)) ? Format.QCOW2 : Format.RAW;
  }

  /** The file's first 4 bytes, fewer for a shorter file. */
  private static byte[] magic(Path p) throws IOException {
    try (InputStream in = Files.newInputStream(p)) {
      return in.readNBytes(4);
    }
  }

  private static boolean isQcow2Magic(byte[] magic) {
    return magic.length == 4 && ByteBuffer.wrap(magic).getInt() == Header.QCOW_MAGIC;
  }
}
