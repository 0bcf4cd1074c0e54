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
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManager;
import javax.net.ssl.TrustManagerFactory;
import javax.net.ssl.X509TrustManager;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.jqcowfs.storage.StorageOpener;

/**
 * Opens remote locations ({@link HttpLocation}) as {@link HttpStorage}, read-only and without
 * locks, and hands every other location to the local opener. One HTTP client (one pool of
 * kept-alive connections, TLS verified against the JDK's trust store and {@link
 * RemoteOptions#caFile}) serves every object it opens; {@link #stats} sums their requests.
 */
public final class RemoteOpener implements StorageOpener {
  private final StorageOpener local;
  private final RemoteOptions options;
  private final RemoteStats stats = new RemoteStats();
  private HttpClient client; // guarded by this

  public RemoteOpener(StorageOpener local, RemoteOptions options) {
    this.local = local;
    this.options = options;
  }

  /**
   * The location a user's argument names: an {@code http://} or {@code https://} URL, else a local
   * path.
   *
   * @throws IllegalArgumentException for a URL that is not usable (no host, a fragment)
   */
  public static Location parse(String argument) {
    return HttpLocation.isUrl(argument)
        ? HttpLocation.of(argument)
        : FileLocation.of(Path.of(argument));
  }

  /**
   * Opens {@code location}; a remote one only for reading.
   *
   * @throws IOException for a remote location opened {@code writable} (never written), or as {@link
   *     HttpStorage#open} and the local opener say
   */
  @Override
  public Storage open(Location location, boolean writable) throws IOException {
    if (location instanceof HttpLocation h) {
      if (writable) {
        throw new IOException(
            h
                + ": a remote image is never written; use --overlay FILE or --scratch for a"
                + " writable disk over it");
      }
      return HttpStorage.open(h, client(), options, stats);
    }
    return local.open(location, writable);
  }

  /** A remote object has no lock: nothing to take; a local one is locked by the local opener. */
  @Override
  public Closeable lock(Location location, boolean writer) throws IOException {
    return location instanceof HttpLocation ? () -> {} : local.lock(location, writer);
  }

  /** What this opener's remote storages have done so far. */
  public RemoteStats stats() {
    return stats;
  }

  private synchronized HttpClient client() throws IOException {
    if (client == null) {
      client =
          HttpClient.newBuilder()
              .followRedirects(HttpClient.Redirect.NEVER) // checked against the origin at open
              .connectTimeout(Duration.ofSeconds(10))
              .sslContext(sslContext(options.caFile()))
              .build();
    }
    return client;
  }

  /** The JDK's trust store, plus the certificates of {@code caFile} when given. */
  private static SSLContext sslContext(Path caFile) throws IOException {
    try {
      if (caFile == null) {
        return SSLContext.getDefault();
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
      SSLContext ctx = SSLContext.getInstance("TLS");
      ctx.init(null, tmf.getTrustManagers(), null);
      return ctx;
    } catch (GeneralSecurityException e) {
      throw new IOException(
          (caFile != null ? caFile + ": " : "") + "TLS setup failed: " + e.getMessage(), e);
    }
  }
}
