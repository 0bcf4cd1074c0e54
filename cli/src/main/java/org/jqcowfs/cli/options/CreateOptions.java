package org.jqcowfs.cli.options;

import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.jqcowfs.qcow2.Qcow2Create;
import org.jqcowfs.qcow2.crypto.Luks;

/**
 * qemu-img's {@code -o} options for a new qcow2 image, as {@code create} and {@code convert -O
 * qcow2} take them: comma-separated {@code name=value} pairs, in groups (one per {@code -o}).
 */
public final class CreateOptions {
  private CreateOptions() {}

  /**
   * What {@code -o} asked for: the image, its {@code preallocation} mode (off, metadata, falloc,
   * full), and its encryption ({@code encrypt.format=luks} and the {@code encrypt.*} options), or
   * null.
   */
  public record Parsed(Qcow2Create.Options image, String preallocation, Luks.Spec encryption) {}

  /** qemu-img's {@code encrypt.*} options, in the order its "Formatting" line lists them. */
  public static final List<String> ENCRYPT_OPTIONS =
      List.of(
          "encrypt.format",
          "encrypt.cipher-alg",
          "encrypt.cipher-mode",
          "encrypt.ivgen-alg",
          "encrypt.ivgen-hash-alg",
          "encrypt.hash-alg",
          "encrypt.iter-time");

  /**
   * The {@code name=value} pairs of {@code groups}, in order (a later one wins).
   *
   * @throws IllegalArgumentException for a pair without {@code =}
   */
  public static Map<String, String> pairs(List<String> groups) {
    Map<String, String> o = new LinkedHashMap<>();
    for (String group : groups) {
      for (String kv : group.split(",")) {
        int eq = kv.indexOf('=');
        if (eq < 0) {
          throw new IllegalArgumentException("option '" + kv + "' needs a value (name=value)");
        }
        o.put(kv.substring(0, eq), kv.substring(eq + 1));
      }
    }
    return o;
  }

  /**
   * The image {@code o} describes (its {@code backing_file} and {@code backing_fmt} taken out
   * already), of {@code bytes} bytes.
   *
   * @throws IllegalArgumentException naming an option or value qemu-img refuses
   */
  public static Parsed image(
      Map<String, String> o, long bytes, String backingFile, String backingFmt) {
    Qcow2Create.Options d = Qcow2Create.Options.defaults(bytes);
    int clusterBits = d.clusterBits();
    int version = d.version();
    boolean extendedL2 = false;
    boolean zstd = false;
    boolean lazy = false;
    int refcountOrder = d.refcountOrder();
    String dataFile = null;
    boolean dataFileRaw = false;
    String preallocation = "off";
    Map<String, String> encrypt = new LinkedHashMap<>();
    for (Map.Entry<String, String> e : o.entrySet()) {
      String v = e.getValue();
      if (ENCRYPT_OPTIONS.contains(e.getKey())) {
        encrypt.put(e.getKey(), v);
        continue;
      }
      switch (e.getKey()) {
        case "encrypt.key-secret" ->
            throw new IllegalArgumentException(
                "encrypt.key-secret: jqcowfs takes the passphrase from --key-file FILE");
        case "encryption" ->
            throw new IllegalArgumentException(
                "encryption=on is the legacy AES method, which jqcowfs does not create: use"
                    + " encrypt.format=luks");
        case "cluster_size" -> clusterBits = log2(Sizes.parse(v), "cluster_size");
        case "compat" -> version = compat(v, "Invalid compatibility level: ");
        case "extended_l2" -> extendedL2 = onOff(e.getKey(), v);
        case "compression_type" ->
            zstd =
                switch (v) {
                  case "zlib" -> false;
                  case "zstd" -> true;
                  default ->
                      throw new IllegalArgumentException(
                          "compression_type '" + v + "': zlib or zstd");
                };
        case "lazy_refcounts" -> lazy = onOff(e.getKey(), v);
        case "refcount_bits" -> refcountOrder = log2(Long.parseLong(v), "refcount_bits");
        case "data_file" -> dataFile = v;
        case "data_file_raw" -> dataFileRaw = onOff(e.getKey(), v);
        case "preallocation" -> {
          if (!List.of("off", "metadata", "falloc", "full").contains(v)) {
            throw new IllegalArgumentException(
                "Parameter 'preallocation' does not accept value '" + v + "'");
          }
          preallocation = v;
        }
        default -> throw new IllegalArgumentException("Invalid parameter '" + e.getKey() + "'");
      }
    }
    return new Parsed(
        new Qcow2Create.Options(
            bytes,
            clusterBits,
            version,
            extendedL2,
            zstd,
            lazy,
            refcountOrder,
            backingFile,
            backingFmt,
            dataFile,
            dataFileRaw),
        preallocation,
        encryption(encrypt));
  }

  /**
   * The LUKS header {@code encrypt} asks for, QEMU's defaults for what it leaves out; null when it
   * is empty.
   *
   * @throws IllegalArgumentException for another format than luks, options without {@code
   *     encrypt.format}, or a value {@link Luks.Spec} refuses
   */
  public static Luks.Spec encryption(Map<String, String> encrypt) {
    if (encrypt.isEmpty()) {
      return null;
    }
    String format = encrypt.get("encrypt.format");
    if (format == null) {
      throw new IllegalArgumentException("Parameter 'encrypt.format' is missing");
    }
    if (!format.equals("luks")) {
      throw new IllegalArgumentException(
          "encrypt.format '"
              + format
              + "': jqcowfs creates LUKS encryption only (the legacy AES method is not created)");
    }
    Luks.Spec d = Luks.Spec.DEFAULT;
    String iterTime = encrypt.getOrDefault("encrypt.iter-time", "" + d.iterTimeMillis());
    long millis;
    try {
      millis = Long.parseLong(iterTime);
    } catch (NumberFormatException e) {
      throw new IllegalArgumentException("encrypt.iter-time '" + iterTime + "': milliseconds");
    }
    return new Luks.Spec(
        encrypt.getOrDefault("encrypt.cipher-alg", d.cipherAlg()),
        encrypt.getOrDefault("encrypt.cipher-mode", d.cipherMode()),
        encrypt.getOrDefault("encrypt.ivgen-alg", d.ivgenAlg()),
        encrypt.get("encrypt.ivgen-hash-alg"),
        encrypt.getOrDefault("encrypt.hash-alg", d.hashAlg()),
        millis);
  }

  /**
   * The qcow2 version a {@code compat} value names: 2 for {@code 0.10} or {@code v2}, 3 for {@code
   * 1.1} or {@code v3}.
   *
   * @param refusal the message before the value when it names none (create and amend word it
   *     differently)
   * @throws IllegalArgumentException for any other value
   */
  public static int compat(String v, String refusal) {
    return switch (v) {
      case "0.10", "v2" -> 2;
      case "1.1", "v3" -> 3;
      default -> throw new IllegalArgumentException(refusal + v);
    };
  }

  /**
   * An on/off option's value ({@code on}, {@code true}, {@code yes} or the opposites).
   *
   * @throws IllegalArgumentException for any other value
   */
  public static boolean onOff(String key, String v) {
    return switch (v) {
      case "on", "true", "yes" -> true;
      case "off", "false", "no" -> false;
      default -> throw new IllegalArgumentException(key + " must be on or off, not '" + v + "'");
    };
  }

  private static int log2(long value, String key) {
    if (value <= 0 || Long.bitCount(value) != 1) {
      throw new IllegalArgumentException(key + " must be a power of two, not " + value);
    }
    return Long.numberOfTrailingZeros(value);
  }
}
