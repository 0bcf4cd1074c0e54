package org.jqcowfs.remote;

import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.net.http.HttpClient;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.cert.Certificate;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.util.Optional;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.jqcowfs.storage.StorageOpener;
import software.amazon.awssdk.core.exception.SdkClientException;
import software.amazon.awssdk.services.s3.S3Client;

/**
 * Opens remote locations ({@link HttpLocation} as {@link HttpStorage}, {@link S3Location} as {@link
 * S3Storage}), read-only and without locks, and hands every other location to the local opener. One
 * HTTP client for {@code https://} and one S3 client (each a pool of kept-alive connections, TLS
 * verified against the JDK's trust store and {@link RemoteOptions#caFile}), made at first use,
 * serve every object it opens; plain {@code http://} goes over {@link BlockingHttpTransport}.
 * {@link #stats} sums their requests. {@link #close} closes the S3 client.
 */
public final class RemoteOpener implements StorageOpener, Closeable {
  private static final Duration CONNECT_TIMEOUT = Duration.ofSeconds(10);

  private final StorageOpener local;
  private final RemoteOptions options;
  private final RemoteStats stats = new RemoteStats();
  private HttpClient client; // guarded by this
  private BlockingHttpTransport plain; // guarded by this
  private S3Client s3; // guarded by this
  private TrustManager[] trust; // guarded by this

  public RemoteOpener(StorageOpener local, RemoteOptions options) {
    this.local = local;
    this.options = options;
  }

  /**
   * The location a user's argument names: an {@code http://}, {@code https://} or {@code s3://}
   * URL, else a local path.
   *
   * @throws IllegalArgumentException for a URL that is not usable (no host, a fragment, a bad
   *     bucket name)
   */
  public static Location parse(String argument) {
    if (HttpLocation.isUrl(argument)) {
      return HttpLocation.of(argument);
    }
    return S3Location.isUrl(argument)
        ? S3Location.of(argument)
        : FileLocation.of(Path.of(argument));
  }

  /** Whether {@code location} is one this opener reads from a server. */
  public static boolean isRemote(Location location) {
    return location instanceof HttpLocation || location instanceof S3Location;
  }

  /**
   * Opens {@code location}; a remote one only for reading.
   *
   * @throws IOException for a remote location opened {@code writable} (never written), or as {@link
   *     HttpStorage#open} and the local opener say
   */
  @Override
  public Storage open(Location location, boolean writable) throws IOException {
    if (isRemote(location) && writable) {
      throw new IOException(
          location
              + ": a remote image is never written; use --overlay FILE or --scratch for a"
              + " writable disk over it");
    }
    if (location instanceof HttpLocation h) {
      return HttpStorage.open(h, transport(h), options, stats);
    }
    if (location instanceof S3Location s) {
      return S3Storage.open(s, s3(), options, stats);
    }
    return local.open(location, writable);
  }

  /** The {@code http(s)://} or {@code s3://} URL {@code name} is, if it is a usable one. */
  @Override
  public Optional<Location> absoluteName(String name) {
    return url(name);
  }

  /** The {@code http(s)://} or {@code s3://} URL {@code name} is, if it is a usable one. */
  public static Optional<Location> url(String name) {
    if (!HttpLocation.isUrl(name) && !S3Location.isUrl(name)) {
      return Optional.empty();
    }
    try {
      return Optional.of(parse(name));
    } catch (IllegalArgumentException e) {
      return Optional.empty();
    }
  }

  /** A remote object has no lock: nothing to take; a local one is locked by the local opener. */
  @Override
  public Closeable lock(Location location, boolean writer) throws IOException {
    return isRemote(location) ? () -> {} : local.lock(location, writer);
  }

  /** Closes the S3 client's connections; the HTTP client's close when idle. */
  @Override
  public synchronized void close() {
    if (s3 != null) {
      s3.close();
      s3 = null;
    }
  }

  /** What this opener's remote storages have done so far. */
  public RemoteStats stats() {
    return stats;
  }

  /** Plain HTTP over blocking connections (less CPU per byte), HTTPS over the JDK's client. */
  private synchronized HttpTransport transport(HttpLocation location) throws IOException {
    if (location.uri().getScheme().equals("http")) {
      if (plain == null) {
        plain = new BlockingHttpTransport(CONNECT_TIMEOUT, options.timeout());
      }
      return plain;
    }
    return new JdkHttpTransport(client(), options.timeout());
  }

  private synchronized HttpClient client() throws IOException {
    if (client == null) {
      client =
          HttpClient.newBuilder()
              .followRedirects(HttpClient.Redirect.NEVER) // checked against the origin at open
              .connectTimeout(CONNECT_TIMEOUT)
              .executor(Runnable::run) // bodies are copied on the selector thread: no hand-off
              .sslContext(sslContext())
              .build();
    }
    return client;
  }

  private synchronized S3Client s3() throws IOException {
    if (s3 == null) {
      try {
        s3 = S3Clients.create(options, stats, trustManagers());
      } catch (IllegalArgumentException | SdkClientException e) {
        throw new IOException("S3 client: " + e.getMessage(), e);
      }
    }
    return s3;
  }

  private synchronized SSLContext sslContext() throws IOException {
    try {
      SSLContext ctx = SSLContext.getInstance("TLS");
      ctx.init(null, trustManagers(), null);
      return ctx;
    } catch (GeneralSecurityException e) {
      throw new IOException("TLS setup failed: " + e.getMessage(), e);
    }
  }

  private synchronized TrustManager[] trustManagers() throws IOException {
    if (trust == null) {
      trust = trustManagers(options.caFile());
    }
    return trust;
  }

  /** The JDK's trust store, plus the certificates of {@code caFile} when given. */
  private static TrustManager[] trustManagers(Path caFile) throws IOException {
    try {
      if (caFile == null) {
        TrustManagerFactory system =
            TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        system.init((KeyStore) null);
        return system.getTrustManagers();
      }
      KeyStore trusted = KeyStore.getInstance(KeyStore.getDefaultType());
      trusted.load(null, null);
      TrustManagerFactory system =
          TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      system.init((KeyStore) null);
      int n = 0;
      for (TrustManager tm : system.getTrustManagers()) {
        if (tm instanceof X509TrustManager x) {
          for (X509Certificate c : x.getAcceptedIssuers()) {
            trusted.setCertificateEntry("system-" + n++, c);
          }
        }
      }
      int added = 0;
      try (InputStream in = Files.newInputStream(caFile)) {
        for (Certificate c : CertificateFactory.getInstance("X.509").generateCertificates(in)) {
          trusted.setCertificateEntry("ca-file-" + added++, c);
        }
      }
      if (added == 0) {
        throw new IOException(caFile + ": no PEM certificate in the CA file");
      }
      TrustManagerFactory tmf =
          TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
      tmf.init(trusted);
      return tmf.getTrustManagers();
    } catch (GeneralSecurityException e) {
      throw new IOException(
          (caFile != null ? caFile + ": " : "") + "TLS setup failed: " + e.getMessage(), e);
    }
  }
}
