package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.remote.S3Proxy;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The read commands given {@code s3://} URLs of a real S3 server (S3Proxy on 127.0.0.1, SigV4): a
 * chain across two prefixes of a bucket, with compressed, zero and unallocated clusters and a
 * snapshot; {@code info}, {@code map}, {@code check}, {@code convert} and {@code snapshot -l}
 * answer as {@code qemu-img} answers for the local files; errors are one line naming the URL.
 */
class S3CommandsTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  @TempDir static Path dir;
  static S3Proxy s3;
  static Path top;
  static String endpoint;

  @BeforeAll
  static void start() throws Exception {
    s3 = S3Proxy.start(dir.resolve("s3"), "vms");
    System.setProperty("aws.accessKeyId", S3Proxy.ACCESS_KEY);
    System.setProperty("aws.secretAccessKey", S3Proxy.SECRET_KEY);
    System.setProperty("aws.disableEc2Metadata", "true");
    endpoint = s3.endpoint().toString();
    // placed as files: the filesystem backend serves them (Last-Modified, no ETag)
    Path bucket = s3.root.resolve("vms");
    Path base = Files.createDirectories(bucket.resolve("golden")).resolve("base.qcow2");
    Qemu.img(base.getParent(), "create", "-q", "-f", "qcow2", base.toString(), "64M");
    Qemu.io(
        base.getParent(),
        base.toString(),
        "write -P 0x41 0 4M",
        "write -c -P 0x42 8M 2M",
        "write -z 12M 1M");
    top = Files.createDirectories(bucket.resolve("vm1")).resolve("disk.qcow2");
    Qemu.img(
        top.getParent(),
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "../golden/base.qcow2",
        "-F",
        "qcow2",
        top.toString());
    Qemu.io(top.getParent(), top.toString(), "write -P 0x43 1M 1M", "write -z 9M 64k");
    Qemu.img(top.getParent(), "snapshot", "-c", "snap1", top.toString());
    Qemu.io(top.getParent(), top.toString(), "write -P 0x44 20M 3M");
  }

  @AfterAll
  static void stop() throws Exception {
    System.clearProperty("aws.accessKeyId");
    System.clearProperty("aws.secretAccessKey");
    s3.close();
  }

  static DifferentialTest.Run cli(String command, String... rest) {
    String[] args = new String[rest.length + 5];
    args[0] = command;
    args[1] = "--s3-endpoint";
    args[2] = endpoint;
    args[3] = "--allow-dir";
    args[4] = "s3://vms/";
    System.arraycopy(rest, 0, args, 5, rest.length);
    return DifferentialTest.cli(args);
  }

  @Test
  void readCommandsAnswerAsQemuImgForTheLocalFiles(@TempDir Path work) throws Exception {
    String url = "s3://vms/vm1/disk.qcow2";
    DifferentialTest.Run info = cli("info", "--output=json", "--backing-chain", url);
    assertEquals(0, info.code(), info.err());
    assertEquals(
        "s3://vms/golden/base.qcow2",
        JSON.readTree(info.out()).get(0).get("full-backing-filename").asText());
    // assertInfoEqual passes no --s3-endpoint: the SDK's system property names the server
    System.setProperty("aws.endpointUrlS3", endpoint);
    try {
      DifferentialTest.assertInfoEqual(top, url, "s3://vms/");
    } finally {
      System.clearProperty("aws.endpointUrlS3");
    }
    DifferentialTest.Run map = cli("map", "--output=json", url);
    assertEquals(0, map.code(), map.err());
    String qemuMap = Qemu.img(top.getParent(), "map", "--output=json", top.toString());
    DifferentialTest.assertMapsEqual(JSON.readTree(qemuMap), JSON.readTree(map.out()));

    Path reference = Qemu.convertRaw(top, work.resolve("qemu.raw"), null);
    Path ours = work.resolve("ours.raw");
    DifferentialTest.Run convert = cli("convert", url, ours.toString());
    assertEquals(0, convert.code(), convert.err());
    assertEquals(Qemu.sha256(reference), Qemu.sha256(ours), "convert of the URL");

    DifferentialTest.Run check = cli("check", url);
    assertEquals(0, check.code(), check.err());
    assertEquals(Qemu.img(top.getParent(), "check", top.toString()), check.out());

    DifferentialTest.Run list =
        DifferentialTest.cli("snapshot", "-l", "--s3-endpoint", endpoint, url);
    assertEquals(0, list.code(), list.err());
    assertEquals(Qemu.img(top.getParent(), "snapshot", "-l", top.toString()), list.out());
  }

  @Test
  void unsignedRequestsReadAPublicObject(@TempDir Path work) throws Exception {
    Path ours = work.resolve("base.raw");
    DifferentialTest.Run r =
        cli("convert", "--no-sign-request", "s3://vms/golden/base.qcow2", ours.toString());
    assertEquals(0, r.code(), r.err());
    Path reference =
        Qemu.convertRaw(s3.root.resolve("vms/golden/base.qcow2"), work.resolve("q.raw"), null);
    assertEquals(Qemu.sha256(reference), Qemu.sha256(ours));
  }

  @Test
  void errorsAreOneLineNamingTheUrl() {
    DifferentialTest.Run missing = cli("info", "s3://vms/vm1/none.qcow2");
    assertEquals(1, missing.code(), missing.out());
    assertTrue(missing.err().contains("s3://vms/vm1/none.qcow2"), missing.err());
    assertTrue(missing.err().contains("404"), missing.err());
    assertEquals(1, missing.err().strip().lines().count(), missing.err());

    DifferentialTest.Run badBucket = cli("info", "s3://Not_A_Bucket/x.qcow2");
    assertEquals(2, badBucket.code(), badBucket.err());
    assertTrue(badBucket.err().contains("not a valid S3 bucket name"), badBucket.err());

    DifferentialTest.Run rw = cli("check", "-r", "leaks", "s3://vms/vm1/disk.qcow2");
    assertEquals(1, rw.code(), rw.out());
    assertTrue(rw.err().contains("a remote image is never written"), rw.err());
    assertFalse(rw.err().contains(S3Proxy.SECRET_KEY), rw.err());
  }
}
