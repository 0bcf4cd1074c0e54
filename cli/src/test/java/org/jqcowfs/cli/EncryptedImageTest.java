package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Images QEMU encrypts with LUKS, read by {@code jqcowfs convert --key-file} and compared byte for
 * byte with {@code qemu-img convert} given the same secret (a file, as {@code --object
 * secret,file=}); {@code map} as {@code qemu-img map} (no host offsets); chains mixing encrypted
 * and plain layers, with different passphrases; the one-line refusals without a key or with a wrong
 * one.
 */
class EncryptedImageTest {
  @TempDir Path dir;

  private static final String SECRET = "secret,id=s,file=pass";

  private void create(String name, String opts, String backing) throws IOException {
    List<String> cmd =
        new ArrayList<>(List.of("qemu-img", "create", "-q", "-f", "qcow2", "--object", SECRET));
    if (backing != null) {
      cmd.addAll(List.of("-b", backing, "-F", "qcow2"));
    }
    if (opts != null) {
      cmd.addAll(List.of("-o", opts));
    }
    cmd.addAll(List.of(name, "6M"));
    Qemu.createEncrypted(dir, dir.resolve(name), cmd);
  }

  private static String luks(String extra) {
    return "encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=100"
        + (extra.isEmpty() ? "" : "," + extra);
  }

  private void write(String imageOpts, String... commands) throws IOException {
    List<String> cmd = new ArrayList<>(List.of("qemu-io", "--object", SECRET));
    cmd.addAll(List.of("--image-opts", imageOpts));
    for (String c : commands) {
      cmd.addAll(List.of("-c", c));
    }
    Qemu.run(dir, cmd);
  }

  /** qemu-img's raw output of the image {@code imageOpts} describes. */
  private byte[] qemuRaw(String imageOpts) throws IOException {
    Path raw = dir.resolve("qemu.raw");
    Files.deleteIfExists(raw);
    return Files.readAllBytes(Qemu.convertRawOpts(dir, imageOpts, raw, SECRET));
  }

  private byte[] ours(String image, String... keyFiles) throws IOException {
    Path raw = dir.resolve("ours.raw");
    Files.deleteIfExists(raw);
    List<String> args = new ArrayList<>(List.of("convert", "-q"));
    for (String k : keyFiles) {
      args.addAll(List.of("--key-file", dir.resolve(k).toString()));
    }
    args.addAll(List.of(dir.resolve(image).toString(), raw.toString()));
    DifferentialTest.Run r = DifferentialTest.cli(args.toArray(String[]::new));
    assertEquals(0, r.code(), r.err());
    return Files.readAllBytes(raw);
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "",
        "encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256",
        "cluster_size=512",
        "cluster_size=2M",
        "extended_l2=on",
        "data_file=enc.data" // the data, and its IVs, in the data file
      })
  void readsWhatQemuEncrypts(String opts) throws IOException {
    Files.writeString(dir.resolve("pass"), "correct horse");
    String extra = opts.startsWith("encrypt.") ? opts : "";
    String layout = opts.startsWith("encrypt.") || opts.isEmpty() ? "" : opts + ",";
    create("enc.qcow2", layout + luks(extra), null);
    String io = "driver=qcow2,file.filename=enc.qcow2,encrypt.key-secret=s";
    write(
        io,
        "write -q -P 0x11 0 1M",
        "write -q -P 0x22 1500000 70000",
        "write -q -z 2M 128k",
        "write -q -P 0x33 5M 4k");
    assertArrayEquals(qemuRaw(io), ours("enc.qcow2", "pass"), opts);
    DifferentialTest.Run map =
        DifferentialTest.cli(
            "map", "--output=json", "--key-file", dir + "/pass", dir + "/enc.qcow2");
    assertEquals(0, map.code(), map.err());
    String want =
        Qemu.run(dir, "qemu-img", "map", "--output=json", "--object", SECRET, "--image-opts", io);
    DifferentialTest.Run check =
        DifferentialTest.cli("check", "--key-file", dir + "/pass", dir + "/enc.qcow2");
    assertEquals(0, check.code(), opts + ": check (the LUKS area counted): " + check.out());
    assertEquals( // qemu-img 7.2 has no "compressed" key yet
        want.strip(), map.out().strip().replace(", \"compressed\": false", ""), opts + ": map");
  }

  @Test
  void chainsMixEncryptedAndPlainLayersWithTheirOwnPassphrases() throws IOException {
    Files.writeString(dir.resolve("pass"), "base secret");
    create("base.qcow2", luks(""), null);
    write("driver=qcow2,file.filename=base.qcow2,encrypt.key-secret=s", "write -q -P 1 0 4M");
    Qemu.overlay(dir, "mid.qcow2", "base.qcow2", "qcow2", null, "6M");
    write(
        "driver=qcow2,file.filename=mid.qcow2,backing.encrypt.key-secret=s", "write -q -P 2 1M 1M");
    byte[] plainOverEncrypted =
        qemuRaw("driver=qcow2,file.filename=mid.qcow2,backing.encrypt.key-secret=s");
    assertArrayEquals(plainOverEncrypted, ours("mid.qcow2", "pass"));
    // an overlay encrypted with another passphrase, over them
    Files.copy(dir.resolve("pass"), dir.resolve("pass-base"));
    Files.writeString(dir.resolve("pass"), "top secret");
    create("top.qcow2", luks(""), "mid.qcow2");
    Files.writeString(dir.resolve("pass"), "top secret");
    Files.copy(dir.resolve("pass"), dir.resolve("pass-top"));
    Qemu.run(
        dir,
        "qemu-io",
        "--object",
        "secret,id=t,file=pass-top",
        "--object",
        "secret,id=b,file=pass-base",
        "--image-opts",
        "driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=t,"
            + "backing.backing.encrypt.key-secret=b",
        "-c",
        "write -q -P 3 3M 64k");
    Path raw = dir.resolve("qemu-top.raw");
    Qemu.convertRawOpts(
        dir,
        "driver=qcow2,file.filename=top.qcow2,encrypt.key-secret=t,"
            + "backing.backing.encrypt.key-secret=b",
        raw,
        "secret,id=t,file=pass-top",
        "secret,id=b,file=pass-base");
    assertArrayEquals(Files.readAllBytes(raw), ours("top.qcow2", "pass-base", "pass-top"));
  }

  @Test
  void readsTheLegacyAesMethod() throws IOException {
    Files.writeString(dir.resolve("pass"), "old secret");
    create("aes.qcow2", "encrypt.format=aes,encrypt.key-secret=s", null);
    String io = "driver=qcow2,file.filename=aes.qcow2,encrypt.key-secret=s";
    write(io, "write -q -P 0x5a 64k 64k", "write -q -P 0x6b 1000000 70000");
    assertArrayEquals(qemuRaw(io), ours("aes.qcow2", "pass"));
  }

  @Test
  void refusesWithoutTheKeyInOneLine() throws IOException {
    Files.writeString(dir.resolve("pass"), "correct horse");
    create("enc.qcow2", luks(""), null);
    Files.writeString(dir.resolve("wrong"), "wrong horse");
    String image = dir.resolve("enc.qcow2").toString();
    String out = dir.resolve("out.raw").toString();
    DifferentialTest.Run none = DifferentialTest.cli("convert", image, out);
    assertEquals(1, none.code());
    assertEquals(
        "jqcowfs: " + image + ": encrypted with LUKS: give --key-file", none.err().strip());
    DifferentialTest.Run wrong =
        DifferentialTest.cli("convert", "--key-file", dir + "/wrong", image, out);
    assertEquals(1, wrong.code());
    assertEquals(
        "jqcowfs: " + image + ": no key slot opens with this passphrase", wrong.err().strip());
  }

  /**
   * {@code jqcowfs create -o encrypt.format=luks}: QEMU opens the image with the same passphrase
   * (and refuses another), writes and reads it, finds it clean; the layout ({@code qemu-img
   * check}'s clusters and end offset, {@code info} but for the random UUID and the benchmarked
   * iteration counts) is what {@code qemu-img create} makes with the same options; {@code jqcowfs
   * info} prints what {@code qemu-img info} prints for it, without the key.
   */
  @ParameterizedTest
  @ValueSource(
      strings = {
        "",
        "encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,"
            + "encrypt.hash-alg=sha1",
        "encrypt.cipher-alg=aes-128,encrypt.hash-alg=sha512,cluster_size=512",
        "cluster_size=2M,extended_l2=on",
        "compat=0.10,preallocation=metadata"
      })
  void createsWhatQemuOpens(String opts) throws IOException {
    Files.writeString(dir.resolve("pass"), "new horse");
    String o = (opts.isEmpty() ? "" : opts + ",") + "encrypt.format=luks,encrypt.iter-time=10";
    DifferentialTest.Run made =
        DifferentialTest.cli(
            "create", "-q", "-o", o, "--key-file", dir + "/pass", dir + "/ours.qcow2", "6M");
    assertEquals(0, made.code(), made.err());
    create(
        "theirs.qcow2",
        o.replace("encrypt.format=luks", "encrypt.format=luks,encrypt.key-secret=s"),
        null);
    // the same layout as qemu-img create's, before any write
    String ours = "driver=qcow2,file.filename=ours.qcow2,encrypt.key-secret=s";
    assertEquals(
        unrandom(Qemu.run(dir, "qemu-img", "info", "--output=json", "theirs.qcow2"))
            .replace("theirs.qcow2", "ours.qcow2"),
        unrandom(Qemu.run(dir, "qemu-img", "info", "--output=json", "ours.qcow2")),
        opts + ": qemu-img info");
    assertEquals(
        Qemu.checkOpts(dir, ours.replace("ours", "theirs"), SECRET)
            .json()
            .replace("theirs.qcow2", "ours.qcow2"),
        Qemu.checkOpts(dir, ours, SECRET).json(),
        opts + ": qemu-img check (clusters, end offset)");
    for (String format : List.of("human", "json")) {
      DifferentialTest.Run info =
          DifferentialTest.cli("info", "--output=" + format, dir + "/ours.qcow2");
      assertEquals(0, info.code(), info.err());
      assertEquals(
          Qemu.run(dir, "qemu-img", "info", "--output=" + format, dir + "/ours.qcow2").strip(),
          info.out().strip(),
          opts + ": info without the key");
    }
    write(ours, "write -q -P 0x42 100000 3000000", "write -q -z 4M 64k");
    byte[] raw = qemuRaw(ours);
    assertEquals(0x42, raw[100000], opts);
    assertArrayEquals(raw, ours("ours.qcow2", "pass"), opts);
    Qemu.Check check = Qemu.checkOpts(dir, ours, SECRET);
    assertEquals(0, check.exitStatus(), opts + ": " + check.stderr());
    Files.writeString(dir.resolve("wrong"), "old horse");
    Qemu.Check wrong =
        Qemu.anyExit(
            dir,
            60,
            "qemu-io",
            "--object",
            "secret,id=w,file=wrong",
            "--image-opts",
            "driver=qcow2,file.filename=ours.qcow2,encrypt.key-secret=w",
            "-c",
            "read 0 512");
    assertTrue(wrong.stderr().contains("Invalid password"), opts + ": " + wrong.stderr());
  }

  /**
   * {@code convert -O qcow2 -o encrypt.format=luks --target-key-file}: the output reads, through
   * QEMU with the passphrase, as the source; it checks clean with the clusters and end offset
   * {@code qemu-img convert} gives the same conversion; no plaintext of the source in the file.
   */
  @Test
  void convertsIntoAnEncryptedImage() throws IOException {
    Files.writeString(dir.resolve("pass"), "convert horse");
    Qemu.run(dir, "qemu-img", "create", "-q", "-f", "qcow2", "src.qcow2", "6M");
    Qemu.run(
        dir,
        "qemu-io",
        "-c",
        "write -q -P 0x61 100000 2M",
        "-c",
        "write -q -z 3M 1M",
        "-c",
        "write -q -P 0x62 5M 4096",
        "src.qcow2");
    String o = "encrypt.format=luks,encrypt.iter-time=10";
    DifferentialTest.Run r =
        DifferentialTest.cli(
            "convert",
            "-q",
            "-O",
            "qcow2",
            "-o",
            o,
            "--target-key-file",
            dir + "/pass",
            dir + "/src.qcow2",
            dir + "/ours.qcow2");
    assertEquals(0, r.code(), r.err());
    List<String> theirs =
        new ArrayList<>(
            List.of(
                "qemu-img",
                "convert",
                "--object",
                SECRET,
                "-O",
                "qcow2",
                "-o",
                o + ",encrypt.key-secret=s",
                "src.qcow2",
                "theirs.qcow2"));
    Qemu.createEncrypted(dir, dir.resolve("theirs.qcow2"), theirs);
    String ours = "driver=qcow2,file.filename=ours.qcow2,encrypt.key-secret=s";
    Qemu.Check same = Qemu.compareOpts(dir, ours, "driver=qcow2,file.filename=src.qcow2", SECRET);
    assertEquals(0, same.exitStatus(), same.json() + same.stderr());
    assertEquals(
        Qemu.checkOpts(dir, ours.replace("ours", "theirs"), SECRET)
            .json()
            .replace("theirs.qcow2", "ours.qcow2"),
        Qemu.checkOpts(dir, ours, SECRET)
            .json()
            .replaceAll(",\\s*\"fragmented-clusters\": \\d+", ""), // workers allocate in turn
        "qemu-img check of both conversions (clusters, end offset)");
    byte[] file = Files.readAllBytes(dir.resolve("ours.qcow2"));
    byte[] run = new byte[64];
    java.util.Arrays.fill(run, (byte) 0x61);
    assertEquals(
        -1,
        java.util.Collections.indexOfSubList(
            java.util.Arrays.asList(box(file)), java.util.Arrays.asList(box(run))),
        "the source's bytes in the file as plaintext");
    DifferentialTest.Run compressed =
        DifferentialTest.cli(
            "convert",
            "-q",
            "-c",
            "-O",
            "qcow2",
            "-o",
            o,
            "--target-key-file",
            dir + "/pass",
            dir + "/src.qcow2",
            dir + "/c.qcow2");
    assertEquals(1, compressed.code());
    assertTrue(compressed.err().contains("Compression and encryption not supported"));
  }

  private static Byte[] box(byte[] b) {
    Byte[] out = new Byte[b.length];
    for (int i = 0; i < b.length; i++) {
      out[i] = b[i];
    }
    return out;
  }

  /** {@code info} JSON without what differs between two creates: UUID and benchmarked counts. */
  private static String unrandom(String json) {
    return json.replaceAll("\"uuid\": \"[^\"]*\"", "\"uuid\": U")
        .replaceAll("\"(iters|master-key-iters)\": \\d+", "\"$1\": N")
        .replaceAll("\"actual-size\": \\d+", "\"actual-size\": A");
  }

  @Test
  void createRefusesWhatItCannotMakeInOneLine() throws IOException {
    Files.writeString(dir.resolve("pass"), "p");
    String image = dir.resolve("x.qcow2").toString();
    String key = dir.resolve("pass").toString();
    for (String[] c :
        new String[][] {
          {"encrypt.format=luks", null, "encrypt.format=luks needs the passphrase: --key-file"},
          {"encrypt.format=aes", key, "encrypt.format 'aes': jqcowfs creates LUKS encryption only"},
          {"encrypt.format=luks,encrypt.cipher-mode=ecb", key, "encrypt.cipher-mode 'ecb'"},
          {"encrypt.format=luks,encrypt.key-secret=s", key, "encrypt.key-secret: jqcowfs takes"},
          {"encrypt.cipher-alg=aes-128", key, "Parameter 'encrypt.format' is missing"},
          {"encryption=on", key, "encryption=on is the legacy AES method"},
        }) {
      List<String> args = new ArrayList<>(List.of("create", "-q", "-o", c[0]));
      if (c[1] != null) {
        args.addAll(List.of("--key-file", c[1]));
      }
      args.addAll(List.of(image, "1M"));
      DifferentialTest.Run r = DifferentialTest.cli(args.toArray(String[]::new));
      assertEquals(1, r.code(), c[0]);
      assertTrue(r.err().contains(c[2]), c[0] + ": " + r.err());
      assertTrue(!Files.exists(dir.resolve("x.qcow2")), c[0] + ": nothing created");
    }
  }
}
