package org.jqcowfs.chain;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import org.jqcowfs.image.Image;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.image.NamePolicy;
import org.jqcowfs.io.Closeables;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.raw.RawImage;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.jqcowfs.storage.StorageOpener;
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
    return open(FileLocation.of(top), options);
  }

  /**
   * As {@link #open(Path, ChainOptions)}, for an image at any location its {@link
   * ChainOptions#opener} opens; stored names resolve against it ({@link Location#resolve}).
   *
   * @throws ImageFormatException if a layer is refused, as {@link #open(Path, ChainOptions)}
   * @throws IOException if a storage cannot be opened or read
   */
  public static BackingChain open(Location top, ChainOptions options) throws IOException {
    return open(top, options, depth -> depth == 0 && options.hostIo().writable());
  }

  /**
   * As {@link #open(Location, ChainOptions)}, with the layers at the depths {@code writable}
   * accepts (0 = the top) opened for writing, each with the writer's lock (commit writes into a
   * base below the top).
   *
   * @throws ImageFormatException if a layer is refused, as {@link #open(Path, ChainOptions)}
   * @throws IOException if a storage cannot be opened or read
   */
  public static BackingChain open(
      Location top, ChainOptions options, java.util.function.IntPredicate writable)
      throws IOException {
    StorageOpener opener = options.opener();
    List<Image> layers = new ArrayList<>();
    List<Closeable> locks = new ArrayList<>();
    List<Location> seen = new ArrayList<>();
    try {
      Location current = top;
      Format format = options.topFormat();
      if (format == Format.QCOW2) {
        checkQcow2Magic(top, opener);
      }
      NamePolicy names = namePolicy(top, options);
      String snapshot = options.snapshot();
      Location namedBy = null;
      while (current != null) {
        String who = namedBy == null ? "" : " (backing file of " + namedBy + ")";
        if (!current.exists()) {
          throw new NoSuchFileException(current.toString(), null, "does not exist" + who);
        }
        Location real = current.real();
        if (seen.contains(real)) {
          throw new ImageFormatException(
              namedBy, "backing chain cycle: " + chainText(seen) + " -> " + real);
        }
        if (layers.size() > options.maxDepth()) {
          throw new ImageFormatException(
              top, "backing chain deeper than the cap of " + options.maxDepth() + " layers");
        }
        seen.add(real);
        // Only the layers asked for are written; a qcow2 layer takes the writer's lock itself.
        boolean writer = writable.test(layers.size());
        if (writer && options.forceShare()) {
          throw new ImageFormatException(current, "an image opened for writing cannot be shared");
        }
        if (format == Format.RAW) {
          if (snapshot != null) {
            throw new ImageFormatException(current, "a raw image has no snapshots");
          }
        }
        Image image = openLayer(current, format, writer, snapshot, names, options, locks, who);
        layers.add(image);
        if (!(image instanceof Qcow2Image q)) {
          break;
        }
        if (!options.forceShare() && !q.dataFileLocation().equals(q.location())) {
          locks.add(opener.lock(q.dataFileLocation(), false));
        }
        snapshot = null;
        String name = q.backingFileName().orElse(null);
        if (name == null) {
          break;
        }
        Location next = names.resolve(current, name, "backing file");
        format = backingFormat(q, next, options.probeBackingFormat(), opener);
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

  /**
   * Locks and opens one layer; what the storage refuses (a directory, a FIFO) is said with {@code
   * who}, the image whose backing name led here.
   */
  private static Image openLayer(
      Location at,
      Format format,
      boolean writer,
      String snapshot,
      NamePolicy names,
      ChainOptions options,
      List<Closeable> locks,
      String who)
      throws IOException {
    StorageOpener opener = options.opener();
    try {
      if (writer && format == Format.RAW) {
        locks.add(opener.lock(at, true));
      } else if (!options.forceShare() && !writer) {
        locks.add(opener.lock(at, false));
      }
      if (format == Format.RAW) {
        return RawImage.open(at, opener, writer);
      }
      return Qcow2Image.open(
          at,
          new Qcow2Options(
              options.l2CacheBytes(),
              snapshot,
              names,
              options.hostIo().withWritable(writer),
              options.storage(),
              options.passphrases(),
              options.withoutKeys()));
    } catch (IOException e) {
      throw saying(e, at, who);
    }
  }

  private static String chainText(List<Location> seen) {
    StringBuilder b = new StringBuilder();
    for (Location p : seen) {
      b.append(b.length() == 0 ? "" : " -> ").append(p);
    }
    return b.toString();
  }

  /**
   * The top image's directory and the extra allowed ones, or QEMU's follow-anything; URL names in
   * local images as the opener reads them.
   */
  private static NamePolicy namePolicy(Location top, ChainOptions options) throws IOException {
    if (options.unsafeBacking()) {
      return NamePolicy.UNSAFE.withUrlNames(options.opener());
    }
    List<Location> dirs = new ArrayList<>();
    dirs.add(top.directory());
    dirs.addAll(options.allowDirs());
    return NamePolicy.confinedTo(dirs).withUrlNames(options.opener());
  }

  /** Refuses a top image that should be qcow2 but lacks the magic (an empty file too). */
  private static void checkQcow2Magic(Location top, StorageOpener opener) throws IOException {
    byte[] magic = magic(top, opener, "");
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

  private static Format backingFormat(
      Qcow2Image image, Location next, boolean probeQcow2, StorageOpener opener)
      throws IOException {
    String stored = image.backingFormat().orElse(null);
    if (stored == null) {
      Format probed =
          isQcow2Magic(magic(next, opener, " (backing file of " + image.location() + ")"))
              ? Format.QCOW2
              : Format.RAW;
      if (probed == Format.QCOW2 && !probeQcow2) {
        throw new ImageFormatException(
            image.location(),
            "backing file '"
                + image.backingFileName().orElse("")
                + "' ("
                + next
                + ") has no stored format and starts with the qcow2 magic; it is not probed"
                + " into qcow2 (a raw disk whose guest wrote a qcow2 header would reach other"
                + " files). Record its format with 'qemu-img rebase -u -F qcow2 -b "
                + image.backingFileName().orElse("")
                + " "
                + image.location()
                + "', or pass --probe-backing-format if the image is trusted");
      }
      LOG.warn(
          "{}: no backing format stored for '{}'; probed as {}",
          image.location(),
          image.backingFileName().orElse(""),
          probed.name().toLowerCase(java.util.Locale.ROOT));
      return probed;
    }
    return switch (stored) {
      case "qcow2" -> Format.QCOW2;
      case "raw" -> Format.RAW;
      default ->
          throw new ImageFormatException(
              image.location(), "backing format '" + stored + "' is not supported (qcow2 or raw)");
    };
  }

  /**
   * The first 4 bytes at {@code at} (fewer for a shorter object), read through {@code opener},
   * which refuses directories and FIFOs before anything could block; {@code who} says whose backing
   * name led there.
   */
  private static byte[] magic(Location at, StorageOpener opener, String who) throws IOException {
    if (!at.exists()) {
      throw new NoSuchFileException(at.toString(), null, "does not exist" + who);
    }
    try (Storage s = opener.open(at, false)) {
      ByteBuffer b = ByteBuffer.allocate(4);
      int n = s.readUpTo(b, 0);
      return java.util.Arrays.copyOf(b.array(), Math.max(0, n));
    } catch (IOException e) {
      throw saying(e, at, who);
    }
  }

  /**
   * {@code e} as the storage said it of {@code at} (a directory, a FIFO), with {@code who} added:
   * whose backing name led there. Format errors and missing files say it themselves.
   */
  private static IOException saying(IOException e, Location at, String who) {
    if (e instanceof ImageFormatException
        || e instanceof NoSuchFileException
        || who.isEmpty()
        || !String.valueOf(e.getMessage()).startsWith(at + ": ")) {
      return e;
    }
    return new IOException(e.getMessage() + who, e);
  }

  private static boolean isQcow2Magic(byte[] magic) {
    return magic.length == 4 && ByteBuffer.wrap(magic).getInt() == Header.QCOW_MAGIC;
  }
}
