package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code jqcowfs measure} against {@code qemu-img measure}: inputs built by qemu-img and qemu-io
 * (data, zero clusters, a compressed range, an overlay, bitmaps, raw), each measured for several
 * outputs (cluster sizes, refcount widths, extended L2, v2, preallocation, a backing file, raw,
 * JSON), and empty disks by --size; the same output and exit status every time.
 */
class MeasureCommandTest {
  @TempDir Path dir;

  private static final String[][] OUTPUTS = {
    {"-O", "qcow2"},
    {"-O", "qcow2", "-o", "cluster_size=512,refcount_bits=1"},
    {"-O", "qcow2", "-o", "cluster_size=2M,refcount_bits=64"},
    {"-O", "qcow2", "-o", "extended_l2=on"},
    {"-O", "qcow2", "-o", "compat=0.10"},
    {"-O", "qcow2", "-o", "preallocation=full"},
    {"-O", "qcow2", "-o", "preallocation=metadata", "--output=json"},
    {"-O", "qcow2", "-o", "backing_file=elsewhere.qcow2"},
    {"-O", "raw"},
    {"--output=json", "-O", "qcow2"},
  };

  @Test
  void measuresAsQemuImg() throws IOException {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "base.qcow2", "100M");
    Qemu.io(
        dir,
        "base.qcow2",
        "write -q -P 1 0 10M",
        "write -q -z 20M 1M",
        "write -q -c -P 2 30M 1M",
        "write -q -P 3 50000000 100000");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2");
    Qemu.io(dir, "top.qcow2", "write -q -P 4 60M 3M", "write -q -z 0 1M");
    Qemu.img(
        dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096", "bitmaps.qcow2", "77777216");
    Qemu.img(dir, "bitmap", "--add", "-g", "512", "bitmaps.qcow2", "fine");
    Qemu.img(dir, "bitmap", "--add", "bitmaps.qcow2", "a-longer-name-for-the-directory");
    Qemu.io(dir, "bitmaps.qcow2", "write -q -P 5 1M 5M");
    Qemu.img(dir, "convert", "-O", "raw", "top.qcow2", "top.raw");
    List<List<String>> calls = new ArrayList<>();
    for (String input : List.of("base.qcow2", "top.qcow2", "bitmaps.qcow2")) {
      for (String[] o : OUTPUTS) {
        List<String> call = new ArrayList<>(List.of(o));
        call.add(input);
        calls.add(call);
      }
    }
    calls.add(List.of("-f", "raw", "-O", "qcow2", "top.raw"));
    calls.add(List.of("-f", "raw", "top.raw"));
    calls.add(List.of("--size", "1G", "-O", "qcow2"));
    calls.add(List.of("--size", "1G", "-O", "qcow2", "--output=json"));
    calls.add(List.of("--size", "100000000", "-O", "qcow2", "-o", "cluster_size=2M"));
    calls.add(List.of("--size", "1000", "-O", "raw"));
    calls.add(List.of("--size", "64T", "-O", "qcow2", "-o", "cluster_size=512")); // too large
    // LUKS: the header area, rounded up to clusters (qemu-img wants the secret, we need none)
    String luks = "encrypt.format=luks,encrypt.key-secret=s";
    calls.add(List.of("-O", "qcow2", "-o", luks + ",encrypt.cipher-alg=aes-128", "top.qcow2"));
    calls.add(
        List.of(
            "--size",
            "100M",
            "-O",
            "qcow2",
            "-o",
            luks + ",encrypt.cipher-mode=cbc,encrypt.cipher-alg=aes-128,cluster_size=512"));
    Files.writeString(dir.resolve("pass"), "p");
    calls.add(List.of("-O", "qcow2")); // neither
    calls.add(List.of("--size", "1G", "-O", "qcow2", "base.qcow2")); // both
    for (List<String> call : calls) {
      List<String> qemu = new ArrayList<>(List.of("qemu-img", "measure"));
      if (String.join(" ", call).contains("encrypt.")) {
        qemu.addAll(List.of("--object", "secret,id=s,file=pass"));
      }
      qemu.addAll(call);
      Qemu.Check theirs = Qemu.anyExit(dir, 60, qemu.toArray(String[]::new));
      // qemu-img measures LUKS by making a header, PBKDF2 benchmark included, which fails at
      // times here (Qemu.createEncrypted says why)
      for (int i = 0; i < 20 && theirs.stderr().contains("Unable to get accurate CPU"); i++) {
        theirs = Qemu.anyExit(dir, 60, qemu.toArray(String[]::new));
      }
      List<String> ours = new ArrayList<>(List.of("measure"));
      for (String a : call) {
        boolean input = !a.contains("=") && (a.endsWith(".qcow2") || a.endsWith(".raw"));
        ours.add(input ? dir.resolve(a).toString() : a);
      }
      DifferentialTest.Run r = DifferentialTest.cli(ours.toArray(String[]::new));
      assertEquals(theirs.exitStatus(), r.code(), call + ": exit status; ours said " + r.err());
      assertEquals(theirs.json(), r.out(), call + ": output");
    }
  }
}
