package org.jqcowfs.packaging;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.jqcowfs.cli.Main;
import picocli.AutoComplete;
import picocli.CommandLine;
import picocli.codegen.docgen.manpage.ManPageGenerator;

/**
 * Writes the documents generated from the picocli model of {@code jqcowfs} (the one {@link
 * Main#commandLine()} builds, subcommands added there): AsciiDoc man pages, one per command, with
 * picocli-codegen's {@link ManPageGenerator}, and the bash completion script with picocli's {@link
 * AutoComplete}. {@code src/deb/make-docs.sh} turns the AsciiDoc into roff.
 */
public final class Docs {
  private Docs() {}

  /**
   * {@code Docs OUTDIR}: writes {@code OUTDIR/adoc/*.adoc} and {@code OUTDIR/completion/jqcowfs}.
   *
   * @throws IOException if a file cannot be written
   */
  public static void main(String[] args) throws IOException {
    Path out = Path.of(args[0]);
    CommandLine cl = Main.commandLine();
    Files.createDirectories(out.resolve("adoc"));
    int status =
        ManPageGenerator.generateManPage(
            out.resolve("adoc").toFile(), null, new boolean[] {false}, true, cl.getCommandSpec());
    if (status != 0) {
      throw new IOException("ManPageGenerator exited " + status);
    }
    Files.createDirectories(out.resolve("completion"));
    Files.writeString(out.resolve("completion/jqcowfs"), AutoComplete.bash("jqcowfs", cl));
  }
}
