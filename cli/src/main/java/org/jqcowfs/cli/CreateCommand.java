package org.jqcowfs.cli;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.options.CreateOptions;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.Qcow2Create;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code jqcowfs create}: a new, empty qcow2 image, as {@code qemu-img create -f qcow2} makes it
 * (the same options, spelled the same way, and the same layout).
 */
@Command(
    name = "create",
    mixinStandardHelpOptions = true,
    customSynopsis =
        "jqcowfs create [-q] [-f qcow2] [-b BACKING -F FMT] [-o OPTIONS] [--key-file FILE] IMAGE"
            + " [SIZE]",
    description = {
      "Create a qcow2 image of SIZE bytes (k, M, G, T suffixes), or of the backing file's size.",
      "OPTIONS, comma-separated as qemu-img's: cluster_size, compat (0.10 or 1.1),"
          + " extended_l2, compression_type (zlib or zstd), lazy_refcounts, refcount_bits,"
          + " data_file, backing_file, backing_fmt, preallocation (off); encrypt.format=luks"
          + " with encrypt.cipher-alg (aes-256, aes-128), encrypt.cipher-mode (xts, cbc),"
          + " encrypt.ivgen-alg (plain64, essiv), encrypt.hash-alg (sha256, sha1, sha512),"
          + " encrypt.iter-time (2000 ms) and the passphrase from --key-file."
    })
final class CreateCommand implements Callable<Integer> {
  @Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(names = "-f", paramLabel = "FMT", description = "the image format: qcow2 only")
  String format = "qcow2";

  @Option(
      names = "-b",
      paramLabel = "BACKING",
      description = "the backing file, stored as given (relative names: to IMAGE's directory)")
  String backing;

  @Option(names = "-F", paramLabel = "FMT", description = "the backing file's format")
  String backingFormat;

  @Option(names = "-o", paramLabel = "OPTIONS", description = "format options, as qemu-img's")
  List<String> options = new ArrayList<>();

  @Option(
      names = "--key-file",
      paramLabel = "FILE",
      description =
          "The passphrase of key slot 0 of an image made with encrypt.format=luks: FILE's bytes"
              + " as they are, as QEMU's --object secret,file= reads them.")
  Path keyFile;

  @Option(names = "-q", description = "quiet: no \"Formatting\" line")
  boolean quiet;

  @Parameters(index = "0", paramLabel = "IMAGE")
  Path image;

  @Parameters(index = "1", arity = "0..1", paramLabel = "SIZE")
  String size;

  @Override
  public Integer call() throws Exception {
    if (!format.equals("qcow2")) {
      throw new IllegalArgumentException("jqcowfs creates qcow2 images only, not " + format);
    }
    Map<String, String> o = CreateOptions.pairs(options);
    String backingFile = o.containsKey("backing_file") ? o.remove("backing_file") : backing;
    String backingFmt = o.containsKey("backing_fmt") ? o.remove("backing_fmt") : backingFormat;
    if (backingFile != null && backingFmt == null) {
      throw new IllegalArgumentException(
          "Backing file specified without backing format (use -F qcow2 or -F raw)");
    }
    if (backingFmt != null && !backingFmt.equals("qcow2") && !backingFmt.equals("raw")) {
      throw new IllegalArgumentException(
          "backing format '" + backingFmt + "': the formats are qcow2 and raw");
    }
    long bytes = size != null ? Sizes.parse(size) : -1;
    if (bytes < 0) {
      if (backingFile == null) {
        throw new IllegalArgumentException("Image creation needs a size parameter");
      }
      bytes = backingSize(backingFile, backingFmt);
    }
    CreateOptions.Parsed parsed = CreateOptions.image(o, bytes, backingFile, backingFmt);
    Qcow2Create.Options opts = parsed.image();
    String preallocation = parsed.preallocation();
    String dataFile = opts.dataFile();
    if (!preallocation.equals("off") && dataFile != null) {
      throw new IllegalArgumentException("preallocation with data_file is not supported");
    }
    if (parsed.encryption() != null && keyFile == null) {
      throw new IllegalArgumentException("encrypt.format=luks needs the passphrase: --key-file");
    }
    if (parsed.encryption() == null && keyFile != null) {
      throw new IllegalArgumentException("--key-file is for encrypt.format=luks");
    }
    byte[] passphrase = keyFile != null ? ImageOptions.readKeyFile(keyFile) : null;
    boolean made = false;
    try {
      if (!quiet) {
        PrintWriter out = spec.commandLine().getOut();
        out.println(formatting(opts, o, parsed.encryption() != null));
        out.flush();
      }
      Qcow2Create.create(image, opts);
      made = true;
      Qcow2Options writable =
          Qcow2Options.DEFAULT.withHostIo(HostFileOptions.DEFAULT.withWritable(true));
      if (parsed.encryption() != null) {
        Qcow2Create.encrypt(image, parsed.encryption(), passphrase);
        writable = writable.withPassphrases(List.of(passphrase));
      }
      if (!preallocation.equals("off")) {
        try (Qcow2Image created = Qcow2Image.open(image, writable)) {
          created.preallocate(preallocation);
        }
      }
    } catch (IOException | RuntimeException e) {
      if (made) {
        Files.deleteIfExists(image); // half made: created anew by the next try
      }
      throw e;
    } finally {
      if (passphrase != null) {
        Arrays.fill(passphrase, (byte) 0);
      }
    }
    return 0;
  }

  /** qemu-img's "Formatting" line: the options it was given, in its order. */
  private String formatting(Qcow2Create.Options o, Map<String, String> given, boolean encrypted) {
    String compat = given.get("compat");
    String preallocation = given.get("preallocation");
    StringBuilder b = new StringBuilder("Formatting '").append(image).append("', fmt=qcow2");
    for (String key : CreateOptions.ENCRYPT_OPTIONS) {
      if (encrypted && given.containsKey(key)) {
        b.append(' ').append(key).append('=').append(given.get(key));
      }
    }
    b.append(" cluster_size=").append(1L << o.clusterBits());
    b.append(" extended_l2=").append(o.extendedL2() ? "on" : "off");
    if (preallocation != null) {
      b.append(" preallocation=").append(preallocation);
    }
    b.append(" compression_type=").append(o.zstd() ? "zstd" : "zlib");
    b.append(" size=").append((o.virtualSize() + 511) & ~511L);
    if (compat != null) {
      b.append(" compat=").append(compat);
    }
    if (o.backingFile() != null) {
      b.append(" backing_file=").append(o.backingFile());
      b.append(" backing_fmt=").append(o.backingFormat());
    }
    if (o.dataFile() != null) {
      b.append(" data_file=").append(o.dataFile());
    }
    b.append(" lazy_refcounts=").append(o.lazyRefcounts() ? "on" : "off");
    b.append(" refcount_bits=").append(1 << o.refcountOrder());
    return b.toString();
  }

  /** The virtual size of the backing file, opened as the new image would open it. */
  private long backingSize(String name, String fmt) throws Exception {
    Path dir = image.toAbsolutePath().getParent();
    Path path = dir.resolve(name);
    ChainOptions options =
        ChainOptions.DEFAULT
            .withForceShare(true)
            .withoutKeys(true) // the size only, as qemu-img opens it (BDRV_O_NO_IO)
            .withTopFormat(fmt.equals("raw") ? ChainOpener.Format.RAW : ChainOpener.Format.QCOW2);
    try (BackingChain chain = ChainOpener.open(path, options)) {
      return chain.size();
    }
  }
}
