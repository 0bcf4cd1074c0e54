package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.jqcowfs.chain.HostileImageTest;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import picocli.CommandLine;

/**
 * {@code jqcowfs check} against {@code qemu-img check} on every image of the hostile corpus ({@link
 * HostileImageTest}): the same exit status; where the check ran (0, 2 or 3), the same counts, image
 * end offset, cluster statistics and messages.
 */
class CheckHostileTest {
  static List<HostileImageTest.Case> cases() {
    return HostileImageTest.cases();
  }

  /**
   * Images jqcowfs refuses to open on purpose, where qemu-img opens them: check exits 1 with a
   * message naming the image, as mount and convert do (docs/usage.md, untrusted images).
   */
  static final Map<String, String> REFUSED_ON_PURPOSE =
      Map.of(
          "backing format not printable", "a backing format no QEMU driver has",
          "backing format extension twice", "two answers to one question in the header",
          "json backing name", "a json: name can reach any host file",
          "chain deeper than the cap", "more than 64 layers",
          "qcow2 backing without format: not probed into qcow2", "no probing into qcow2");

  /** Images on which qemu-img check does not finish: it follows the cycle, or blocks on a FIFO. */
  static final Set<String> QEMU_HANGS = Set.of("self-backed", "backing cycle", "backing is a FIFO");

  /** A qemu-img message in jqcowfs's words: no program name, the command without its name. */
  private static String withoutProgram(String line) {
    return line.replace("qemu-img: warning: ", "warning: ")
        .replace("'qemu-img check -r'", "'check -r'");
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void checksAsQemuImg(HostileImageTest.Case c, @TempDir Path dir) throws Exception {
    Path image = c.build().build(dir);
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    String[] args = {"check", "--output=json", image.toString()};
    CommandLine cl = Main.commandLine(args);
    cl.setOut(new PrintWriter(out));
    cl.setErr(new PrintWriter(err));
    int status = cl.execute(args);
    Qemu.Check got = new Qemu.Check(out.toString(), err.toString(), status);
    if (QEMU_HANGS.contains(c.name()) || REFUSED_ON_PURPOSE.containsKey(c.name())) {
      assertEquals(1, got.exitStatus(), c + ": refused; " + got.stderr());
      assertTrue(got.stderr().contains(image.getParent().toString()), "names the file: " + got);
      return;
    }
    Qemu.Check want = Qemu.check(image);
    assertEquals(
        want.exitStatus(),
        got.exitStatus(),
        c + ": exit status; qemu-img said " + want.stderr() + "; jqcowfs said " + got.stderr());
    if (got.exitStatus() == 1 || got.exitStatus() == CheckCommand.NO_CHECKS) {
      assertTrue(got.stderr().contains(image.getParent().toString()), "names the file");
      return; // neither checked it
    }
    for (String key :
        List.of(
            "corruptions",
            "leaks",
            "check-errors",
            "image-end-offset",
            "total-clusters",
            "allocated-clusters",
            "fragmented-clusters",
            "compressed-clusters")) {
      assertEquals(want.number(key), got.number(key), c + ": " + key + "; " + want.stderr());
    }
    assertEquals(
        want.messages().stream().map(CheckHostileTest::withoutProgram).toList(),
        got.messages(),
        c + ": messages");
  }
}
