package org.jqcowfs.remote;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Objects;
import java.util.regex.Pattern;
import org.jqcowfs.storage.Location;

/**
 * An object in S3-compatible storage: {@code s3://BUCKET/KEY}. A key is a {@code /}-separated path,
 * as the AWS CLI and QEMU's relative names treat it: a stored name resolves against the key's
 * "directory" (its prefix up to the last {@code /}), with {@code .} and {@code ..} segments
 * resolved, and stays in the same bucket; a name that climbs above the bucket's root is refused. A
 * location lies inside a directory only in the same bucket and under the directory's prefix.
 * Immutable.
 */
public final class S3Location implements Location {
  /** Bucket names as S3 allows them (3 to 63 characters; dots for older buckets). */
  private static final Pattern BUCKET = Pattern.compile("[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]");

  /** S3's limit on a key's length, in UTF-8 bytes. */
  private static final int MAX_KEY_BYTES = 1024;

  private final String bucket;
  private final String key;

  private S3Location(String bucket, String key) {
    this.bucket = bucket;
    this.key = key;
  }

  /**
   * The location of {@code url}, {@code s3://BUCKET/KEY}; a key ending in {@code /} names a prefix
   * (a directory for {@code --allow-dir}).
   *
   * @throws IllegalArgumentException if it is not an {@code s3://} URL with a valid bucket name and
   *     a key of at most 1024 bytes, without {@code .} or {@code ..} segments
   */
  public static S3Location of(String url) {
    if (!isUrl(url)) {
      throw new IllegalArgumentException("not an s3:// URL");
    }
    String rest = url.substring("s3://".length());
    int slash = rest.indexOf('/');
    String bucket = slash < 0 ? rest : rest.substring(0, slash);
    String key = slash < 0 ? "" : rest.substring(slash + 1);
    if (!BUCKET.matcher(bucket).matches()) {
      throw new IllegalArgumentException("not a valid S3 bucket name: '" + bucket + "'");
    }
    List<String> segments = List.of(key.split("/", -1));
    if (segments.contains(".") || segments.contains("..")) {
      throw new IllegalArgumentException("S3 key with a . or .. segment: '" + key + "'");
    }
    return checked(bucket, key);
  }

  private static S3Location checked(String bucket, String key) {
    if (key.getBytes(java.nio.charset.StandardCharsets.UTF_8).length > MAX_KEY_BYTES) {
      throw new IllegalArgumentException("S3 key longer than " + MAX_KEY_BYTES + " bytes");
    }
    if (key.chars().anyMatch(c -> c < 0x20 || c == 0x7f)) {
      throw new IllegalArgumentException("S3 key with a control character");
    }
    return new S3Location(bucket, key);
  }

  /** Whether {@code name} is an {@code s3:} URL (by its scheme). */
  public static boolean isUrl(String name) {
    return name.toLowerCase(Locale.ROOT).startsWith("s3://");
  }

  /** The bucket's name. */
  public String bucket() {
    return bucket;
  }

  /** The object's key (no leading {@code /}). */
  public String key() {
    return key;
  }

  /**
   * {@code name} resolved against this key's prefix, {@code .} and {@code ..} segments resolved;
   * the bucket stays. A leading {@code /} is taken as relative too (the name policy refuses such
   * names of a remote image before).
   *
   * @throws IllegalArgumentException if {@code ..} climbs above the bucket's root, or the key is
   *     not one S3 allows
   */
  @Override
  public Location resolve(String name) {
    List<String> out = new ArrayList<>(List.of(prefix().split("/", -1)));
    out.remove(out.size() - 1); // the empty segment after the prefix's last '/'
    String[] parts = name.split("/", -1);
    for (int i = 0; i < parts.length; i++) {
      String p = parts[i];
      boolean last = i == parts.length - 1;
      if (p.equals("..")) {
        if (out.isEmpty()) {
          throw new IllegalArgumentException("'" + name + "' climbs above the bucket's root");
        }
        out.remove(out.size() - 1);
      } else if (!p.equals(".") && (!p.isEmpty() || last)) {
        out.add(p);
      }
    }
    return checked(bucket, String.join("/", out));
  }

  /** The key up to its last {@code /}, that included; empty at the bucket's root. */
  private String prefix() {
    return key.substring(0, key.lastIndexOf('/') + 1);
  }

  @Override
  public Location directory() {
    return new S3Location(bucket, prefix());
  }

  @Override
  public boolean isInside(Location dir) {
    return dir instanceof S3Location d
        && d.bucket.equals(bucket)
        && key.startsWith(d.key.isEmpty() || d.key.endsWith("/") ? d.key : d.key + "/");
  }

  @Override
  public Location real() {
    return this;
  }

  @Override
  public Location realDirectory() {
    return key.isEmpty() || key.endsWith("/") ? this : new S3Location(bucket, key + "/");
  }

  /** The key's last segment: the file name the URL names. */
  public String fileName() {
    return key.substring(key.lastIndexOf('/') + 1);
  }

  /** Always true: whether the bucket has it is asked by the open, which names the status. */
  @Override
  public boolean exists() {
    return true;
  }

  @Override
  public String toString() {
    return "s3://" + bucket + "/" + key;
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof S3Location s && s.bucket.equals(bucket) && s.key.equals(key);
  }

  @Override
  public int hashCode() {
    return Objects.hash(bucket, key);
  }
}
