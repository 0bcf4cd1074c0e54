package org.jqcowfs.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.util.Set;
import org.junit.jupiter.api.Test;
import picocli.CommandLine;

/**
 * Which subcommands {@link Main#commandLine(String[])} builds, and that help and errors still work.
 */
class MainTest {
  private static final Set<String> ALL =
      Set.of(
          "info",
          "map",
          "convert",
          "compare",
          "mount",
          "unmount",
          "umount",
          "snapshot",
          "commit",
          "rebase",
          "resize",
          "measure",
          "amend",
          "bitmap",
          "check",
          "create",
          "help");

  private static Set<String> subcommands(String... args) {
    return Main.commandLine(args).getSubcommands().keySet();
  }

  @Test
  void aSubcommandNamedFirstIsTheOnlyOneBuilt() {
    assertEquals(Set.of("convert"), subcommands("convert", "a.qcow2", "a.raw"));
    assertEquals(Set.of("mount"), subcommands("mount", "a.qcow2", "/mnt"));
    assertEquals(Set.of("unmount", "umount"), subcommands("umount", "/mnt"));
  }

  @Test
  void helpOptionsAndUnknownWordsGetEverySubcommand() {
    assertEquals(ALL, subcommands());
    assertEquals(ALL, subcommands("--help"));
    assertEquals(ALL, subcommands("help", "convert"));
    assertEquals(ALL, subcommands("convrt", "a.qcow2"));
    assertEquals(ALL, subcommands("-V"));
  }

  @Test
  void anUnknownCommandIsAnErrorEvenWithHelpAfterIt() {
    String[] args = {"frobnicate", "--help"};
    String error = Main.unknownCommand(Main.commandLine(args), args);
    assertTrue(
        error != null && error.startsWith("jqcowfs: unknown command 'frobnicate'"), "" + error);
    for (String[] fine :
        new String[][] {{"--help"}, {"-V"}, {"umount", "/mnt"}, {"help", "convert"}, {}}) {
      assertEquals(null, Main.unknownCommand(Main.commandLine(fine), fine), String.join(" ", fine));
    }
  }

  @Test
  void helpForOneCommandAndTheSuggestionForATypoAreThoseOfTheFullCommandLine() {
    StringWriter out = new StringWriter();
    CommandLine cl = Main.commandLine(new String[] {"help", "convert"});
    cl.setOut(new PrintWriter(out));
    assertEquals(0, cl.execute("help", "convert"));
    assertTrue(out.toString().startsWith("Usage: jqcowfs convert "), out.toString());

    StringWriter err = new StringWriter();
    cl = Main.commandLine(new String[] {"convrt"});
    cl.setErr(new PrintWriter(err));
    assertEquals(2, cl.execute("convrt"));
    assertTrue(err.toString().contains("Did you mean: jqcowfs convert or"), err.toString());
  }
}
