package org.jqcowfs.remote;

import java.net.URI;
import java.time.Duration;
import javax.net.ssl.TrustManager;
import software.amazon.awssdk.auth.credentials.AnonymousCredentialsProvider;
import software.amazon.awssdk.auth.credentials.AwsCredentialsProvider;
import software.amazon.awssdk.auth.credentials.DefaultCredentialsProvider;
import software.amazon.awssdk.awscore.retry.AwsRetryStrategy;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.core.checksums.ResponseChecksumValidation;
import software.amazon.awssdk.core.exception.SdkClientException;
import software.amazon.awssdk.core.interceptor.Context;
import software.amazon.awssdk.core.interceptor.ExecutionAttribute;
import software.amazon.awssdk.core.interceptor.ExecutionAttributes;
import software.amazon.awssdk.core.interceptor.ExecutionInterceptor;
import software.amazon.awssdk.http.apache5.Apache5HttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.regions.providers.AwsProfileRegionProvider;
import software.amazon.awssdk.regions.providers.AwsRegionProviderChain;
import software.amazon.awssdk.regions.providers.SystemSettingsRegionProvider;
import software.amazon.awssdk.services.s3.S3Client;

/**
 * Builds the one S3 client an opener uses: the standard credential chain (environment, system
 * properties, profile files, container and instance roles) or none ({@link
 * RemoteOptions#s3Unsigned}); the region of the environment or profile, else {@code us-east-1} with
 * cross-region access; an S3-compatible endpoint ({@link RemoteOptions#s3Endpoint}, else {@code
 * AWS_ENDPOINT_URL_S3}, else {@code AWS_ENDPOINT_URL}) with path-style requests; the SDK's standard
 * retries bounded by the options; TLS trusting the system's CAs and {@link RemoteOptions#caFile}.
 */
final class S3Clients {
  /** Connections kept to the endpoint: enough for every part of a few reads in flight. */
  private static final int MAX_CONNECTIONS = 64;

  private S3Clients() {}

  /**
   * The endpoint the options name, else the environment ({@code AWS_ENDPOINT_URL_S3}, then {@code
   * AWS_ENDPOINT_URL}, each after its system property {@code aws.endpointUrlS3}, {@code
   * aws.endpointUrl}, as the SDK orders them), or null for AWS's own.
   *
   * @throws IllegalArgumentException if the setting is not a URL with a host
   */
  static URI endpoint(RemoteOptions options) {
    if (options.s3Endpoint() != null) {
      return options.s3Endpoint();
    }
    String[][] settings = {
      {"AWS_ENDPOINT_URL_S3", System.getProperty("aws.endpointUrlS3")},
      {"AWS_ENDPOINT_URL", System.getProperty("aws.endpointUrl")}
    };
    for (String[] setting : settings) {
      String name = setting[0];
      String v = setting[1] != null ? setting[1] : System.getenv(name);
      if (v != null && !v.isBlank()) {
        URI u = URI.create(v.trim());
        if (u.getHost() == null) {
          throw new IllegalArgumentException(name + " is not a URL with a host");
        }
        return u;
      }
    }
    return null;
  }

  static S3Client create(RemoteOptions options, RemoteStats stats, TrustManager[] trust) {
    AwsCredentialsProvider credentials =
        options.s3Unsigned()
            ? AnonymousCredentialsProvider.create()
            : DefaultCredentialsProvider.builder().build();
    Duration timeout = options.timeout();
    var b =
        S3Client.builder()
            .credentialsProvider(credentials)
            .region(region())
            .crossRegionAccessEnabled(true)
            // S3-compatible servers refuse the newer checksum headers; ranges have none anyway
            .requestChecksumCalculation(RequestChecksumCalculation.WHEN_REQUIRED)
            .responseChecksumValidation(ResponseChecksumValidation.WHEN_REQUIRED)
            .httpClient(
                Apache5HttpClient.builder()
                    .maxConnections(MAX_CONNECTIONS)
                    .connectionTimeout(Duration.ofSeconds(10))
                    .socketTimeout(timeout)
                    .tlsTrustManagersProvider(() -> trust)
                    .build())
            .overrideConfiguration(
                o ->
                    o.retryStrategy(
                            AwsRetryStrategy.standardRetryStrategy().toBuilder()
                                .maxAttempts(options.attempts())
                                .circuitBreakerEnabled(false)
                                .build())
                        .apiCallAttemptTimeout(timeout)
                        .apiCallTimeout(options.retryTime())
                        .addExecutionInterceptor(new Counter(stats)));
    URI endpoint = endpoint(options);
    if (endpoint != null) {
      b.endpointOverride(endpoint).forcePathStyle(true);
    }
    return b.build();
  }

  /**
   * The region of the environment or the profile, else us-east-1 (cross-region access follows a
   * bucket's own); not the instance metadata, which costs seconds where it is absent.
   */
  private static Region region() {
    try {
      return new AwsRegionProviderChain(
              new SystemSettingsRegionProvider(), new AwsProfileRegionProvider())
          .getRegion();
    } catch (SdkClientException e) {
      return Region.US_EAST_1;
    }
  }

  /** Counts requests sent, and those sent again, into the opener's stats. */
  private static final class Counter implements ExecutionInterceptor {
    private static final ExecutionAttribute<Boolean> SENT =
        new ExecutionAttribute<>("jqcowfs-sent");
    private final RemoteStats stats;

    Counter(RemoteStats stats) {
      this.stats = stats;
    }

    @Override
    public void beforeTransmission(Context.BeforeTransmission context, ExecutionAttributes a) {
      stats.requests.increment();
      if (a.getAttribute(SENT) != null) {
        stats.retries.increment();
      }
      a.putAttribute(SENT, Boolean.TRUE);
    }
  }
}
