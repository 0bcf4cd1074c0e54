package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Path;
import java.util.List;
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

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void checksAsQemuImg(HostileImageTest.Case c, @TempDir Path dir) throws Exception {
    Path image = c.build().build(dir);
    Qemu.Check want = Qemu.check(image);
    StringWriter out = new StringWriter();
    StringWriter err = new StringWriter();
    String[] args = {"check", "--output=json", image.toString()};
    CommandLine cl = Main.commandLine(args);
    cl.setOut(new PrintWriter(out));
    cl.setErr(new PrintWriter(err));
    int status = cl.execute(args);
    Qemu.Check got = new Qemu.Check(out.toString(), err.toString(), status);
    assertEquals(
        want.exitStatus(),
        got.exitStatus(),
        c + ": exit status; qemu-img said " + want.stderr() + "; jqcowfs said " + got.stderr());
    if (got.exitStatus() == 1) {
      return; // neither could check it
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
    assertEquals(want.messages(), got.messages(), c + ": messages");
  }
}
