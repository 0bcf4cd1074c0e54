package org.jqcowfs.packaging;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The built .deb installed on this machine ({@code dpkg -i}, as root): the command, a man page,
 * bash completion, a mount through an fstab file and through {@code mount -t fuse.jqcowfs}, each
 * equal to {@code qemu-img convert}, unmounted through the kernel's path; then {@code dpkg -r}
 * leaves none of its files behind.
 */
class DebPackageIT {
  record Run(int code, String out, String err) {}

  static Run sh(String script) throws IOException, InterruptedException {
    Path out = Files.createTempFile("deb-out", ".txt");
    Path err = Files.createTempFile("deb-err", ".txt");
    try {
      Process p =
          new ProcessBuilder("bash", "-c", script)
              .redirectOutput(out.toFile())
              .redirectError(err.toFile())
              .start();
      if (!p.waitFor(300, TimeUnit.SECONDS)) {
        p.destroyForcibly();
        throw new IOException("timed out: " + script);
      }
      return new Run(p.exitValue(), Files.readString(out), Files.readString(err));
    } finally {
      Files.deleteIfExists(out);
      Files.deleteIfExists(err);
    }
  }

  static Run ok(String script) throws IOException, InterruptedException {
    Run r = sh(script);
    assertEquals(0, r.code(), script + ": " + r.err() + r.out());
    return r;
  }

  @Test
  void installUseAndRemove(@TempDir Path dir) throws Exception {
    Path deb = Path.of(System.getProperty("deb"));
    assertTrue(Files.exists(deb), "built: " + deb);
    assertEquals("root", System.getProperty("user.name"), "dpkg -i needs root");
    ok("dpkg -i " + deb);
    List<String> files = new ArrayList<>();
    try {
      for (String f : ok("dpkg -L jqcowfs").out().split("\n")) {
        if (!f.isBlank() && !Files.isDirectory(Path.of(f))) {
          files.add(f);
        }
      }
      assertTrue(files.contains("/sbin/mount.jqcowfs"), "" + files);
      assertEquals("jqcowfs 0.1.0", ok("jqcowfs --version").out().trim());
      assertEquals(
          "/usr/share/man/man1/jqcowfs-mount.1.gz", ok("man -w jqcowfs-mount").out().trim());
      assertTrue(ok("man -w jqcowfs").out().trim().endsWith("jqcowfs.1.gz"));
      Run completion =
          ok(
              "source /usr/share/bash-completion/completions/jqcowfs;"
                  + " COMP_WORDS=(jqcowfs mo); COMP_CWORD=1; COMP_LINE='jqcowfs mo'; COMP_POINT=10;"
                  + " _complete_jqcowfs; echo \"${COMPREPLY[@]}\"");
      assertEquals("mount", completion.out().trim());
      assertTrue(Files.exists(Path.of("/usr/lib/jqcowfs/jqcowfs.jsa")), "the postinst's archive");

      ok(
          "cd "
              + dir
              + " && qemu-img create -q -f qcow2 img.qcow2 64M"
              + " && qemu-io -f qcow2 -c 'write -q -P 7 1M 2M' -c 'write -q -P 9 40M 1M' img.qcow2"
              + " && qemu-img convert -O raw img.qcow2 ref.raw && mkdir mnt");
      Path image = dir.resolve("img.qcow2");
      Path mnt = dir.resolve("mnt");
      Path fstab = dir.resolve("fstab");
      Files.writeString(
          fstab, image + " " + mnt + " jqcowfs ro,allow_other,nofail,defaults,x-test=1 0 0\n");
      ok("mount -T " + fstab + " " + mnt);
      String mounts = Files.readString(Path.of("/proc/mounts"));
      assertTrue(mounts.contains(image + " " + mnt + " fuse.jqcowfs ro,"), mounts);
      ok("cmp " + dir.resolve("ref.raw") + " " + mnt.resolve("img.raw"));
      ok("umount " + mnt);
      assertFalse(Files.readString(Path.of("/proc/mounts")).contains(mnt.toString()));

      ok("mount -t fuse.jqcowfs -o ro " + image + " " + mnt);
      ok("cmp " + dir.resolve("ref.raw") + " " + mnt.resolve("img.raw"));
      ok("umount " + mnt);
    } finally {
      ok("dpkg -r jqcowfs");
    }
    for (String f : files) {
      assertFalse(Files.exists(Path.of(f), java.nio.file.LinkOption.NOFOLLOW_LINKS), "left: " + f);
    }
    assertFalse(Files.exists(Path.of("/usr/lib/jqcowfs")), "/usr/lib/jqcowfs left behind");
  }
}
