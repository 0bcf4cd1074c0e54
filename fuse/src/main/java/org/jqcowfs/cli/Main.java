package org.jqcowfs.cli;

import java.io.PrintWriter;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code jqcowfs} command line. */
@Command(
    name = "jqcowfs",
    mixinStandardHelpOptions = true,
    version = "jqcowfs 0.1.0",
    description = "Mount qcow2 images, with their backing chains, as flat raw files.",
    subcommands = {
      InfoCommand.class,
      MapCommand.class,
      ConvertCommand.class,
      MountCommand.class,
      UnmountCommand.class,
      SnapshotCommand.class,
      CommandLine.HelpCommand.class
    })
public final class Main implements Runnable {
  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    throw new CommandLine.ParameterException(spec.commandLine(), "a command is required");
  }

  /** Builds the command line with jqcowfs's error handling: one clear line, exit code 1. */
  public static CommandLine commandLine() {
    CommandLine cl = new CommandLine(new Main());
    cl.setExecutionExceptionHandler(
        (e, commandLine, parseResult) -> {
          PrintWriter err = commandLine.getErr();
          err.println("jqcowfs: " + message(e));
          if (Boolean.getBoolean("jqcowfs.debug")) {
            e.printStackTrace(err);
          }
          err.flush();
          return 1;
        });
    return cl;
  }

  static String message(Throwable e) {
    if (e instanceof java.nio.file.NoSuchFileException n) {
      return n.getFile() + ": " + (n.getReason() != null ? n.getReason() : "no such file");
    }
    if (e instanceof java.nio.file.AccessDeniedException a) {
      return a.getFile() + ": permission denied";
    }
    String m = e.getMessage();
    return m != null ? m : e.getClass().getSimpleName();
  }

  public static void main(String[] args) {
    System.exit(commandLine().execute(args));
  }
}
