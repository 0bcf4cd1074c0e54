package org.jqcowfs.cli.options;

import java.io.IOException;
import java.net.URI;
import java.net.URISyntaxException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.remote.RemoteOpener;
import org.jqcowfs.remote.RemoteOptions;
import org.jqcowfs.remote.RemoteStats;
import org.jqcowfs.storage.Location;
import picocli.CommandLine;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

/**
 * The options every command that opens images has: QEMU's {@code -U}, and the rules for the file
 * names stored in images (backing files, external data files), which are the image maker's words.
 */
public final class ImageOptions {
  @Option(
      names = {"-U", "--force-share"},
      description =
          "Open images even when another process (a VM, qemu-img) writes them, and take no"
              + " QEMU-compatible locks. Without it, such an image is refused, and while jqcowfs"
              + " has an image open, QEMU cannot open it for writing.")
  boolean forceShare;

  @Option(
      names = "--allow-dir",
      paramLabel = "DIR|URL-PREFIX",
      description =
          "Let backing and data file names stored in images lead into DIR and below, or below"
              + " URL-PREFIX (http://, https:// or s3://BUCKET/PREFIX; repeatable); by default only"
              + " the directory of IMAGE (or its URL's directory) and below.")
  List<String> allowDirs = new ArrayList<>();

  @Option(
      names = "--remote-cache-size",
      paramLabel = "BYTES",
      description =
          "Memory for the blocks fetched of each remote image (suffixes K, M, G; default 64M).")
  String cacheSize;

  @Option(
      names = "--cache-dir",
      paramLabel = "DIR",
      description =
          "Also keep the blocks fetched of remote images in DIR (made 0700 when missing), reused"
              + " by later commands and mounts while the object is unchanged (same ETag); DIR grows"
              + " with what is read: delete its files to free the space.")
  Path cacheDir;

  @Option(
      names = "--ca-file",
      paramLabel = "PEM",
      description =
          "Trust the CA certificates in PEM for https:// images, besides the system's trust store.")
  Path caFile;

  @Option(
      names = "--s3-endpoint",
      paramLabel = "URL",
      description =
          "The endpoint of an S3-compatible server (MinIO, Ceph RGW, ...) for s3:// images, with"
              + " path-style requests; default AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else"
              + " AWS. Credentials and region come from the AWS environment and profile.")
  String s3Endpoint;

  @Option(
      names = "--no-sign-request",
      description = "Send S3 requests unsigned, without credentials (a public bucket).")
  boolean noSignRequest;

  @Option(
      names = "--unsafe-backing",
      description =
          "Follow any backing or data file name an image stores, as QEMU does. Only for images"
              + " you trust: an image can name any file readable to you (/etc/shadow as root).")
  boolean unsafeBacking;

  @Option(
      names = "--probe-backing-format",
      description =
          "Open a backing file whose format is not stored as qcow2 when it starts with the qcow2"
              + " magic (refused by default: a raw disk whose guest wrote a qcow2 header could"
              + " name any file). Only for images you trust.")
  boolean probeBackingFormat;

  @Option(
      names = "--key-file",
      paramLabel = "FILE",
      description =
          "The passphrase of an image encrypted with LUKS: FILE's bytes as they are, as QEMU's"
              + " --object secret,file= reads them (repeatable: each is tried on every encrypted"
              + " layer, in order). Never give a passphrase on the command line.")
  List<Path> keyFiles = new ArrayList<>();

  /** Key files' most bytes (cryptsetup's default key file limit). */
  static final long MAX_KEY_FILE_BYTES = 8L << 20;

  private RemoteOpener opener;

  @Spec(Spec.Target.MIXEE)
  CommandSpec command;

  // Read policies, each on by default; off only to measure it (docs/performance.md).
  @Option(names = "--no-direct-reads", hidden = true)
  boolean noDirectReads;

  @Option(names = "--no-mapped-reads", hidden = true)
  boolean noMappedReads;

  @Option(names = "--no-linux-aio", hidden = true)
  boolean noLinuxAio;

  /** {@code options} with these choices applied. */
  public ChainOptions apply(ChainOptions options) {
    HostFileOptions io = options.hostIo();
    List<Location> dirs = new ArrayList<>();
    for (String d : allowDirs) {
      dirs.add(location(d));
    }
    return options
        .withPassphrases(passphrases())
        .withForceShare(forceShare)
        .withAllowedDirs(dirs, unsafeBacking, probeBackingFormat)
        .withHostIo(
            new HostFileOptions(
                io.writable(),
                io.directReads() && !noDirectReads,
                io.mappedReads() && !noMappedReads,
                io.linuxAio() && !noLinuxAio));
  }

  /**
   * The bytes of each {@code --key-file}, in order.
   *
   * @throws IllegalArgumentException naming a file that cannot be read, is empty, or is over {@link
   *     #MAX_KEY_FILE_BYTES}
   */
  private List<byte[]> passphrases() {
    List<byte[]> keys = new ArrayList<>();
    for (Path f : keyFiles) {
      keys.add(readKeyFile(f));
    }
    read.addAll(keys);
    return keys;
  }

  /** The passphrases read so far, for {@link #wipeKeys}. */
  private final List<byte[]> read = new ArrayList<>();

  /**
   * Zeroes the passphrases read from the key files (the options given out hold the same arrays):
   * once every image that needs them is open, so that a long-lived mount keeps only the ciphers'
   * keys.
   */
  public void wipeKeys() {
    for (byte[] k : read) {
      java.util.Arrays.fill(k, (byte) 0);
    }
    read.clear();
  }

  /**
   * The bytes of the key file {@code f}, as QEMU's {@code --object secret,file=} takes them.
   *
   * @throws IllegalArgumentException naming a file that cannot be read, is empty, or is over {@link
   *     #MAX_KEY_FILE_BYTES}
   */
  public static byte[] readKeyFile(Path f) {
    try {
      long bytes = Files.size(f);
      if (bytes == 0 || bytes > MAX_KEY_FILE_BYTES) {
        throw new IllegalArgumentException(
            "key file " + f + ": " + bytes + " bytes (1 to " + MAX_KEY_FILE_BYTES + ")");
      }
      return Files.readAllBytes(f);
    } catch (IOException e) {
      throw new IllegalArgumentException("key file " + f + ": " + Errors.message(e));
    }
  }

  /** The remote read options these choices give. */
  public RemoteOptions remoteOptions() {
    RemoteOptions o = RemoteOptions.DEFAULT;
    if (cacheSize != null) {
      try {
        o = o.withCacheBytes(Sizes.parse(cacheSize));
      } catch (IllegalArgumentException e) {
        throw usage("--remote-cache-size: " + e.getMessage());
      }
    }
    if (s3Endpoint != null || noSignRequest) {
      try {
        o = o.withS3(s3Endpoint == null ? null : new URI(s3Endpoint), noSignRequest);
      } catch (URISyntaxException | IllegalArgumentException e) {
        throw usage("--s3-endpoint '" + s3Endpoint + "': not an http(s) URL with a host");
      }
    }
    if (cacheDir != null) {
      o = o.withCacheDir(cacheDir);
    }
    return caFile != null ? o.withCaFile(caFile) : o;
  }

  /**
   * Opens {@code image} (a path, an http(s) or an s3 URL) and its chain with {@code options},
   * remote layers read as {@link #remoteOptions} say, local ones as {@code options.hostIo()} says.
   *
   * @throws picocli.CommandLine.ParameterException for a URL that is not usable
   */
  public BackingChain open(String image, ChainOptions options) throws IOException {
    return open(location(image), options);
  }

  /** As {@link #open(String, ChainOptions)}, for a location. */
  public BackingChain open(Location image, ChainOptions options) throws IOException {
    return ChainOpener.open(image, withOpener(options));
  }

  /**
   * {@code options} opening remote layers as {@link #remoteOptions} say and local ones as {@code
   * options.hostIo()} says (give it the final host I/O options).
   */
  public ChainOptions withOpener(ChainOptions options) {
    opener = new RemoteOpener(new PosixOpener(options.hostIo()), remoteOptions());
    return options.withStorage(opener);
  }

  /** What the remote layers of the chain {@link #open} opened last have fetched, or null. */
  public RemoteStats remoteStats() {
    return opener == null ? null : opener.stats();
  }

  /** The location a user's argument names, or a usage error of the command naming it. */
  public Location location(String argument) {
    try {
      return RemoteOpener.parse(argument);
    } catch (IllegalArgumentException e) {
      throw usage("'" + argument + "': " + e.getMessage());
    }
  }

  /** A usage error of the command these options belong to. */
  private CommandLine.ParameterException usage(String message) {
    return new CommandLine.ParameterException(
        command != null ? command.commandLine() : new CommandLine(CommandSpec.create()), message);
  }

  /** picocli converter for {@code --format}: qcow2 or raw, as qemu-img spells them. */
  public static final class FormatConverter
      implements CommandLine.ITypeConverter<ChainOpener.Format> {
    @Override
    public ChainOpener.Format convert(String value) {
      return switch (value) {
        case "qcow2" -> ChainOpener.Format.QCOW2;
        case "raw" -> ChainOpener.Format.RAW;
        default ->
            throw new CommandLine.TypeConversionException(
                "'" + value + "': the formats are qcow2 and raw");
      };
    }
  }
}
