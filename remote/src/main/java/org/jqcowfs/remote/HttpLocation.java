package org.jqcowfs.remote;

import java.net.URI;
import java.net.URISyntaxException;
import java.util.Locale;
import java.util.Objects;
import org.jqcowfs.storage.Location;

/**
 * An image on an HTTP(S) server: an absolute {@code http} or {@code https} URL. A stored name
 * resolves against the URL as QEMU resolves a name relative to a URL ({@code path_combine}), but
 * always as a path: its characters are quoted, so that a name cannot add a query, a fragment, a
 * host or percent escapes. A location lies inside a directory only on the same origin (scheme, host
 * and port) and under the directory's path, with no {@code ..} segment left. Messages name it
 * without user information and with its query elided ({@link #toString}): a pre-signed URL's query
 * is a secret. Immutable.
 */
public final class HttpLocation implements Location {
  private final URI uri;

  private HttpLocation(URI uri) {
    this.uri = uri;
  }

  /**
   * The location of {@code url}.
   *
   * @throws IllegalArgumentException if it is not an absolute {@code http}/{@code https} URL with a
   *     host, or has a fragment; the message names it as {@link #toString} would
   */
  public static HttpLocation of(String url) {
    URI u;
    try {
      u = new URI(url);
    } catch (URISyntaxException e) {
      throw new IllegalArgumentException("not a URL: " + e.getReason());
    }
    String scheme = u.getScheme() == null ? "" : u.getScheme().toLowerCase(Locale.ROOT);
    if (!scheme.equals("http") && !scheme.equals("https")) {
      throw new IllegalArgumentException("not an http or https URL: " + scheme);
    }
    if (u.getHost() == null) {
      throw new IllegalArgumentException("URL without a host: " + redact(u));
    }
    if (u.getRawFragment() != null) {
      throw new IllegalArgumentException("URL with a fragment: " + redact(u));
    }
    String path = u.getRawPath() == null || u.getRawPath().isEmpty() ? "/" : u.getRawPath();
    try {
      u =
          new URI(
              scheme
                  + "://"
                  + (u.getRawUserInfo() != null ? u.getRawUserInfo() + "@" : "")
                  + u.getRawAuthority().substring(u.getRawAuthority().indexOf('@') + 1)
                  + path
                  + (u.getRawQuery() != null ? "?" + u.getRawQuery() : ""));
    } catch (URISyntaxException e) {
      throw new IllegalArgumentException("not a URL: " + e.getReason());
    }
    return new HttpLocation(u.normalize());
  }

  /** Whether {@code name} is an {@code http:} or {@code https:} URL (by its scheme). */
  public static boolean isUrl(String name) {
    String n = name.toLowerCase(Locale.ROOT);
    return n.startsWith("http://") || n.startsWith("https://");
  }

  /** The URL, as requested (user information and query included). */
  public URI uri() {
    return uri;
  }

  /**
   * {@code name} resolved against this URL's directory, quoted as a path (QEMU {@code
   * path_combine}); the query of this URL is not carried over. The name is taken as relative even
   * when it starts with {@code /} (the name policy refuses such names of a remote image before), so
   * that no name reaches another origin.
   *
   * @throws IllegalArgumentException if the name cannot be quoted as a path
   */
  @Override
  public Location resolve(String name) {
    try {
      URI relative = new URI(null, null, "./" + name, null);
      return new HttpLocation(stripQuery(uri).resolve(relative).normalize());
    } catch (URISyntaxException e) {
      throw new IllegalArgumentException("name '" + name + "' is not a path: " + e.getReason());
    }
  }

  @Override
  public Location directory() {
    return new HttpLocation(stripQuery(uri).resolve("."));
  }

  @Override
  public boolean isInside(Location dir) {
    if (!(dir instanceof HttpLocation d) || !sameOrigin(d)) {
      return false;
    }
    String path = uri.getRawPath();
    String prefix =
        d.uri.getRawPath().endsWith("/") ? d.uri.getRawPath() : d.uri.getRawPath() + "/";
    return !path.contains("/../") && !path.endsWith("/..") && path.startsWith(prefix);
  }

  /** Whether {@code other} has this URL's scheme, host and port. */
  public boolean sameOrigin(HttpLocation other) {
    return uri.getScheme().equals(other.uri.getScheme())
        && uri.getHost().equalsIgnoreCase(other.uri.getHost())
        && port() == other.port();
  }

  private int port() {
    return uri.getPort() >= 0 ? uri.getPort() : uri.getScheme().equals("https") ? 443 : 80;
  }

  @Override
  public Location real() {
    return this;
  }

  @Override
  public Location realDirectory() {
    String path = uri.getRawPath();
    return path.endsWith("/")
        ? this
        : new HttpLocation(stripQuery(uri).resolve("./" + lastSegment() + "/"));
  }

  private String lastSegment() {
    String path = uri.getRawPath();
    return path.substring(path.lastIndexOf('/') + 1);
  }

  /** The last segment of the path, decoded: the file name the URL names. */
  public String fileName() {
    return URI.create("x:/" + lastSegment()).getPath().substring(1);
  }

  /** Always true: whether the server has it is asked by the open, which names the status. */
  @Override
  public boolean exists() {
    return true;
  }

  private static URI stripQuery(URI u) {
    return u.getRawQuery() == null
        ? u
        : URI.create(u.toString().substring(0, u.toString().indexOf('?')));
  }

  /** The URL without user information, and with {@code ?…} for its query. */
  static String redact(URI u) {
    StringBuilder b = new StringBuilder();
    b.append(u.getScheme()).append("://").append(u.getHost());
    if (u.getPort() >= 0) {
      b.append(':').append(u.getPort());
    }
    b.append(u.getRawPath() == null ? "" : u.getRawPath());
    if (u.getRawQuery() != null) {
      b.append("?…");
    }
    return b.toString();
  }

  @Override
  public String toString() {
    return redact(uri);
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof HttpLocation h && h.uri.equals(uri);
  }

  @Override
  public int hashCode() {
    return Objects.hash(uri);
  }
}
