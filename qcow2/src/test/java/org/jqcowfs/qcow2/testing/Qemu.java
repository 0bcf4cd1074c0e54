package org.jqcowfs.qcow2.testing;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.concurrent.TimeUnit;

/** Runs qemu-img and qemu-io for tests, each under a time limit; failures throw with stderr. */
public final class Qemu {
  private Qemu() {}

  /** Runs a command in {@code dir}; returns stdout. */
  public static String run(Path dir, String... cmd) throws IOException {
    return run(dir, List.of(cmd));
  }

  /** Runs a command in {@code dir}; returns stdout. */
  public static String run(Path dir, List<String> cmd) throws IOException {
    ProcessBuilder pb = new ProcessBuilder(cmd).directory(dir.toFile());
    Path err = Files.createTempFile("qemu-err", ".txt");
    pb.redirectError(err.toFile());
    Process p = pb.start();
    byte[] out;
    try (InputStream in = p.getInputStream()) {
      out = in.readAllBytes();
    }
    try {
      if (!p.waitFor(300, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IOException("timed out: " + cmd);
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted: " + cmd, e);
    }
    String stderr = Files.readString(err);
    Files.deleteIfExists(err);
    if (p.exitValue() != 0) {
      throw new IOException(cmd + " exited " + p.exitValue() + ": " + stderr);
    }
    return new String(out, StandardCharsets.UTF_8);
  }

  /** {@code qemu-img ARGS...} in {@code dir}. */
  public static String img(Path dir, String... args) throws IOException {
    List<String> cmd = new ArrayList<>();
    cmd.add("qemu-img");
    cmd.addAll(Arrays.asList(args));
    return run(dir, cmd);
  }

  /**
   * {@code qemu-img create -q -f qcow2 [-o OPTIONS] -b BACKING -F FORMAT NAME [SIZE]} in {@code
   * dir}: an overlay over {@code backing}.
   *
   * @param options creation options, or null
   * @param size the virtual size, or null for the backing file's
   */
  public static void overlay(
      Path dir, String name, String backing, String format, String options, String size)
      throws IOException {
    List<String> args = new ArrayList<>(List.of("create", "-q", "-f", "qcow2"));
    if (options != null) {
      args.addAll(List.of("-o", options));
    }
    args.addAll(List.of("-b", backing, "-F", format, name));
    if (size != null) {
      args.add(size);
    }
    img(dir, args.toArray(String[]::new));
  }

  /** {@code qemu-io -f FORMAT IMAGE -c CMD...} in {@code dir}. */
  public static String io(Path dir, String image, String... commands) throws IOException {
    List<String> cmd = new ArrayList<>(List.of("qemu-io", "-f", "qcow2"));
    for (String c : commands) {
      cmd.add("-c");
      cmd.add(c);
    }
    cmd.add(image);
    return run(dir, cmd);
  }

  /** {@code qemu-img convert -O raw IMAGE OUT} (with {@code -l snapshot.name=} if given). */
  public static Path convertRaw(Path image, Path out, String snapshot) throws IOException {
    List<String> cmd = new ArrayList<>(List.of("qemu-img", "convert", "-O", "raw"));
    if (snapshot != null) {
      cmd.add("-l");
      cmd.add("snapshot.name=" + snapshot);
    }
    cmd.add(image.toString());
    cmd.add(out.toString());
    run(image.getParent(), cmd);
    return out;
  }

  /**
   * {@code qemu-img convert -O raw} of the image {@code imageOpts} describes ({@code
   * --image-opts}), each of {@code secrets} given as {@code --object} (e.g. {@code
   * secret,id=s,file=pass}).
   */
  public static Path convertRawOpts(Path dir, String imageOpts, Path out, String... secrets)
      throws IOException {
    run(
        dir,
        withSecrets(
            List.of("qemu-img", "convert"),
            secrets,
            "--image-opts",
            imageOpts,
            "-O",
            "raw",
            out.toString()));
    return out;
  }

  /** {@code qemu-img check --output=json} of {@code imageOpts} with {@code secrets}, any exit. */
  public static Check checkOpts(Path dir, String imageOpts, String... secrets) throws IOException {
    return anyExit(
        dir,
        120,
        withSecrets(
                List.of("qemu-img", "check", "--output=json"), secrets, "--image-opts", imageOpts)
            .toArray(String[]::new));
  }

  /** {@code qemu-img compare} of two {@code --image-opts} images with {@code secrets}, any exit. */
  public static Check compareOpts(Path dir, String a, String b, String... secrets)
      throws IOException {
    return anyExit(
        dir,
        120,
        withSecrets(List.of("qemu-img", "compare"), secrets, "--image-opts", a, b)
            .toArray(String[]::new));
  }

  private static List<String> withSecrets(List<String> head, String[] secrets, String... tail) {
    List<String> cmd = new ArrayList<>(head);
    for (String s : secrets) {
      cmd.add("--object");
      cmd.add(s);
    }
    cmd.addAll(List.of(tail));
    return cmd;
  }

  /** {@code qemu-img map --output=json IMAGE}. */
  public static String mapJson(Path image) throws IOException {
    return img(image.getParent(), "map", "--output=json", image.toString());
  }

  /** The SHA-256 of a file, hex. */
  public static String sha256(Path file) throws IOException {
    try (InputStream in = Files.newInputStream(file)) {
      MessageDigest md = MessageDigest.getInstance("SHA-256");
      byte[] buf = new byte[1 << 20];
      for (int n; (n = in.read(buf)) > 0; ) {
        md.update(buf, 0, n);
      }
      return HexFormat.of().formatHex(md.digest());
    } catch (java.security.NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }

  /**
   * {@code qemu-img check --output=json}'s answer, its stderr lines and exit status (0 clean, 2
   * corruptions, 3 leaks only).
   */
  public record Check(String json, String stderr, int exitStatus) {
    /** A number of the JSON answer, 0 when absent. */
    public long number(String key) {
      java.util.regex.Matcher m =
          java.util.regex.Pattern.compile("\"" + key + "\": (\\d+)").matcher(json);
      return m.find() ? Long.parseLong(m.group(1)) : 0;
    }

    /** The non-blank lines of stderr. */
    public List<String> messages() {
      List<String> out = new ArrayList<>();
      // QEMU 7.2 prints "found L1 entry with reserved bits set" without its newline (fixed later)
      for (String line :
          stderr.replaceAll("([0-9a-f])(ERROR |Leaked cluster )", "$1\n$2").split("\n")) {
        if (!line.isBlank()) {
          out.add(line);
        }
      }
      return out;
    }
  }

  /**
   * A dirty bitmap as QEMU exports it: {@code qemu-nbd -r -B NAME} on a Unix socket beside the
   * image, read with {@code nbdinfo --map=qemu:dirty-bitmap:NAME} (Debian's libnbd-bin). Runs of
   * {start, length, dirty (1) or clean (0)} that tile the disk, neighbours of one kind merged.
   *
   * @throws IOException if qemu-nbd does not serve the bitmap (in use, or none of that name)
   */
  public static List<long[]> dirtyBitmap(Path image, String name) throws IOException {
    Path socket = image.resolveSibling("nbd-" + image.getFileName() + ".sock");
    Files.deleteIfExists(socket);
    Path log = image.resolveSibling("qemu-nbd.log");
    Process server =
        new ProcessBuilder(
                "qemu-nbd", "-r", "-f", "qcow2", "-B", name, "--socket=" + socket, image.toString())
            .redirectErrorStream(true)
            .redirectOutput(log.toFile())
            .start();
    try {
      for (int i = 0; i < 200 && !Files.exists(socket) && server.isAlive(); i++) {
        Thread.sleep(25);
      }
      if (!Files.exists(socket)) {
        throw new IOException("qemu-nbd -B " + name + " " + image + ": " + Files.readString(log));
      }
      String out;
      try {
        out =
            run(
                image.getParent(),
                "nbdinfo",
                "--map=qemu:dirty-bitmap:" + name,
                "nbd+unix:///?socket=" + socket);
      } catch (IOException e) { // qemu-nbd binds the socket before it opens the image
        server.waitFor(5, TimeUnit.SECONDS);
        throw new IOException(e.getMessage() + "; qemu-nbd: " + Files.readString(log), e);
      }
      List<long[]> runs = new ArrayList<>();
      for (String line : out.split("\n")) {
        String[] f = line.trim().split("\\s+");
        if (f.length < 3) {
          continue;
        }
        long start = Long.parseLong(f[0]);
        long length = Long.parseLong(f[1]);
        long dirty = Long.parseLong(f[2]) & 1;
        long[] last = runs.isEmpty() ? null : runs.get(runs.size() - 1);
        if (last != null && last[2] == dirty && last[0] + last[1] == start) {
          last[1] += length;
        } else {
          runs.add(new long[] {start, length, dirty});
        }
      }
      return runs;
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IOException("interrupted", e);
    } finally {
      server.destroy();
      try {
        server.waitFor(10, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      Files.deleteIfExists(socket);
    }
  }

  /** {@link #dirtyBitmap} as text, one "start+length" per dirty run: for assertion messages. */
  public static String dirtyRuns(List<long[]> runs) {
    StringBuilder b = new StringBuilder();
    for (long[] r : runs) {
      if (r[2] == 1) {
        b.append(b.length() == 0 ? "" : " ").append(r[0]).append('+').append(r[1]);
      }
    }
    return b.toString();
  }

  /**
   * The internal snapshots of {@code image} as {@code qemu-img snapshot -l} lists them: "ID NAME"
   * per snapshot, in table order (the columns by position: names may be empty).
   */
  public static List<String> snapshots(Path image) throws IOException {
    List<String> out = new ArrayList<>();
    String list = run(image.getParent(), "qemu-img", "snapshot", "-l", image.toString());
    for (String line : list.split("\n")) {
      if (line.length() < 27 || line.startsWith("ID ") || line.startsWith("Snapshot list")) {
        continue;
      }
      out.add(line.substring(0, 10).trim() + " " + line.substring(10, 27).trim());
    }
    return out;
  }

  /**
   * Runs {@code cmd}, a qemu-img create of an image encrypted with LUKS, again (up to 20 times)
   * when QEMU's PBKDF2 benchmark fails ("Unable to get accurate CPU usage": {@code
   * qcrypto_pbkdf2_count_iters} measures its first 32768 iterations, about 10 ms here, in thread
   * CPU time, which the kernel may count as 0 ms; CI saw three such failures in a row). The
   * half-made image is deleted first; a failed attempt takes about 30 ms.
   *
   * @param image the image file {@code cmd} creates
   */
  public static void createEncrypted(Path dir, Path image, List<String> cmd) throws IOException {
    for (int attempt = 1; ; attempt++) {
      Check r = anyExit(dir, 120, cmd.toArray(String[]::new));
      if (r.exitStatus() == 0) {
        return;
      }
      if (attempt == 20 || !r.stderr().contains("Unable to get accurate CPU usage")) {
        throw new IOException(cmd + " exited " + r.exitStatus() + ": " + r.stderr());
      }
      java.nio.file.Files.deleteIfExists(image);
    }
  }

  /**
   * {@code qemu-img create -q -f qcow2 --object secret,id=s,file=pass -o OPTIONS IMAGE SIZE} in
   * {@code dir}, as {@link #createEncrypted} runs it; {@code options} name the secret as {@code
   * encrypt.key-secret=s}.
   */
  public static void createWithSecret(Path dir, Path image, String options, String size)
      throws IOException {
    createEncrypted(
        dir,
        image,
        List.of(
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "--object",
            "secret,id=s,file=pass",
            "-o",
            options,
            image.toString(),
            size));
  }

  /** Runs {@code qemu-img check --output=json IMAGE}, whatever its exit status. */
  public static Check check(Path image) throws IOException {
    return anyExit(image.getParent(), "qemu-img", "check", "--output=json", image.toString());
  }

  /** Runs {@code qemu-img check -r MODE --output=json IMAGE} (mode leaks or all). */
  public static Check repair(Path image, String mode) throws IOException {
    return anyExit(
        image.getParent(), "qemu-img", "check", "-r", mode, "--output=json", image.toString());
  }

  /**
   * {@code qemu-img compare A B}: its output ("Images are identical." or the first mismatch) and
   * its exit status in a {@link Check}.
   */
  public static Check compare(Path a, Path b) throws IOException {
    return anyExit(a.getParent(), "qemu-img", "compare", a.toString(), b.toString());
  }

  private static Check anyExit(Path dir, String... cmd) throws IOException {
    return anyExit(dir, 120, cmd);
  }

  /**
   * Runs {@code cmd} in {@code dir}, both outputs to files (a long report would block a pipe), for
   * at most {@code seconds}.
   *
   * @throws IOException naming the command when it runs longer (it is killed)
   */
  public static Check anyExit(Path dir, int seconds, String... cmd) throws IOException {
    Path outFile = Files.createTempFile("qemu-out", ".txt");
    Path errFile = Files.createTempFile("qemu-err", ".txt");
    try {
      Process p =
          new ProcessBuilder(cmd)
              .directory(dir.toFile())
              .redirectOutput(outFile.toFile())
              .redirectError(errFile.toFile())
              .start();
      try {
        if (!p.waitFor(seconds, TimeUnit.SECONDS)) {
          p.destroyForcibly().waitFor();
          throw new IOException("timed out after " + seconds + " s: " + List.of(cmd));
        }
      } catch (InterruptedException e) {
        p.destroyForcibly();
        Thread.currentThread().interrupt();
        throw new IOException("interrupted", e);
      }
      return new Check(Files.readString(outFile), Files.readString(errFile), p.exitValue());
    } finally {
      Files.deleteIfExists(outFile);
      Files.deleteIfExists(errFile);
    }
  }
}
