package org.jqcowfs.remote;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.core.checksums.RequestChecksumCalculation;
import software.amazon.awssdk.core.checksums.ResponseChecksumValidation;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3Client;

/**
 * A real S3 server: S3Proxy ({@code org.gaul:s3proxy} 2.6.0, its jar with dependencies copied to
 * {@code target/s3proxy} by the build) in its own JVM on 127.0.0.1, SigV4 credentials {@link
 * #ACCESS_KEY}/{@link #SECRET_KEY}, jclouds' filesystem backend: a bucket is a folder of {@link
 * #root} and an object a file below it, so a test can place objects by writing files (no ETag then,
 * only Last-Modified) or upload them ({@link #put}, with an ETag). Stopped by {@link #close}.
 */
public final class S3Proxy implements AutoCloseable {
  public static final String ACCESS_KEY = "jqcowfs-test-key";
  public static final String SECRET_KEY = "jqcowfs-test-secret-0123456789";

  /** The folder whose first-level folders are the buckets. */
  public final Path root;

  public final int port;
  private final Process process;
  private final S3Client client;

  private S3Proxy(Path root, int port, Process process) {
    this.root = root;
    this.port = port;
    this.process = process;
    this.client =
        S3Client.builder()
            .endpointOverride(endpoint())
            .forcePathStyle(true)
            .region(Region.US_EAST_1)
            .credentialsProvider(
                StaticCredentialsProvider.create(
                    AwsBasicCredentials.create(ACCESS_KEY, SECRET_KEY)))
            .requestChecksumCalculation(RequestChecksumCalculation.WHEN_REQUIRED)
            .responseChecksumValidation(ResponseChecksumValidation.WHEN_REQUIRED)
            .build();
  }

  /** Starts S3Proxy serving {@code dir/buckets}, with {@code buckets} made empty. */
  public static S3Proxy start(Path dir, String... buckets)
      throws IOException, InterruptedException {
    String jar = System.getProperty("s3proxy.jar");
    if (jar == null || !Files.isRegularFile(Path.of(jar))) {
      throw new IllegalStateException(
          "s3proxy.jar not found (" + jar + "): the build copies it to target/s3proxy");
    }
    Path root = Files.createDirectories(dir.resolve("buckets"));
    for (String b : buckets) {
      Files.createDirectories(root.resolve(b));
    }
    int port;
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      port = s.getLocalPort();
    }
    Path properties = dir.resolve("s3proxy.properties");
    Files.write(
        properties,
        List.of(
            "s3proxy.endpoint=http://127.0.0.1:" + port,
            "s3proxy.authorization=aws-v2-or-v4",
            "s3proxy.identity=" + ACCESS_KEY,
            "s3proxy.credential=" + SECRET_KEY,
            "jclouds.provider=filesystem",
            "jclouds.filesystem.basedir=" + root));
    Path java = Path.of(System.getProperty("java.home"), "bin", "java");
    Process p =
        new ProcessBuilder(
                java.toString(),
                "-Xmx192m",
                "-XX:TieredStopAtLevel=1",
                "-jar",
                jar,
                "--properties",
                properties.toString())
            .redirectErrorStream(true)
            .redirectOutput(dir.resolve("s3proxy.log").toFile())
            .start();
    Nginx.awaitListening(p, port, Duration.ofSeconds(60), dir.resolve("s3proxy.log"), "S3Proxy");
    return new S3Proxy(root, port, p);
  }

  /** The server's URL, for {@code --s3-endpoint} and {@code AWS_ENDPOINT_URL}. */
  public URI endpoint() {
    return URI.create("http://127.0.0.1:" + port);
  }

  /** Uploads {@code file} as {@code bucket/key} (so that the object has an ETag). */
  public void put(String bucket, String key, Path file) {
    client.putObject(b -> b.bucket(bucket).key(key), RequestBody.fromFile(file));
  }

  /** Remote options reading from this server, signed with the test credentials' chain. */
  public RemoteOptions options() {
    return RemoteOptions.DEFAULT.withS3(endpoint(), false);
  }

  @Override
  public void close() throws InterruptedException {
    client.close();
    process.destroy();
    if (!process.waitFor(10, TimeUnit.SECONDS)) {
      process.destroyForcibly().waitFor();
    }
  }
}
