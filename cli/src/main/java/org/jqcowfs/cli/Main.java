package org.jqcowfs.cli;

import java.io.PrintWriter;
import java.util.List;
import org.jqcowfs.cli.options.Errors;
import org.jqcowfs.io.Posix;
import org.slf4j.LoggerFactory;
import picocli.CommandLine;
import picocli.CommandLine.Command;

/** The {@code jqcowfs} command line. */
@Command(
    name = "jqcowfs",
    mixinStandardHelpOptions = true,
    version = "jqcowfs 0.1.0",
    description = "Mount qcow2 images, with their backing chains, as flat raw files.")
public final class Main implements Runnable {
  /** The subcommands, in the order the usage help lists them. */
  static final List<Class<?>> COMMANDS =
      List.of(
          InfoCommand.class,
          MapCommand.class,
          ConvertCommand.class,
          org.jqcowfs.cli.chainops.CompareCommand.class,
          MountCommand.class,
          UnmountCommand.class,
          SnapshotCommand.class,
          org.jqcowfs.cli.chainops.CommitCommand.class,
          org.jqcowfs.cli.chainops.RebaseCommand.class,
          org.jqcowfs.cli.chainops.ResizeCommand.class,
          org.jqcowfs.cli.chainops.MeasureCommand.class,
          org.jqcowfs.cli.chainops.AmendCommand.class,
          BitmapCommand.class,
          CheckCommand.class,
          CreateCommand.class,
          CommandLine.HelpCommand.class);

  @CommandLine.Spec CommandLine.Model.CommandSpec spec;

  @Override
  public void run() {
    throw new CommandLine.ParameterException(spec.commandLine(), "a command is required");
  }

  /**
   * Builds the command line with every subcommand and jqcowfs's error handling: one clear line,
   * exit code 1.
   */
  public static CommandLine commandLine() {
    return commandLine(COMMANDS);
  }

  /**
   * The command line for {@code args}: when the first argument names a subcommand (or one of its
   * aliases), the model of that one only. picocli reads every option of every subcommand it is
   * given before it parses a word, which is a third of a short command's start
   * (docs/performance.md). Help, options of {@code jqcowfs} itself and unknown words get every
   * subcommand, so usage, {@code help COMMAND} and "did you mean" work as before.
   */
  static CommandLine commandLine(String[] args) {
    for (Class<?> c : COMMANDS) {
      Command command = c.getAnnotation(Command.class);
      if (args.length > 0
          && c != CommandLine.HelpCommand.class
          && (command.name().equals(args[0]) || List.of(command.aliases()).contains(args[0]))) {
        return commandLine(List.of(c));
      }
    }
    return commandLine();
  }

  private static CommandLine commandLine(List<Class<?>> commands) {
    CommandLine cl = new CommandLine(new Main());
    for (Class<?> c : commands) {
      cl.addSubcommand(c);
    }
    if (cl.getSubcommands().containsKey("bitmap")) { // its operations repeat, in order
      cl.getSubcommands().get("bitmap").setOverwrittenOptionsAllowed(true);
    }
    if (cl.getSubcommands().containsKey("resize")) { // "-1G" is a size, as after "--"
      cl.getSubcommands().get("resize").setUnmatchedOptionsArePositionalParams(true);
    }
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

  /** What a command prints after "jqcowfs: " for {@code e} ({@link Errors#message}). */
  public static String message(Throwable e) {
    return Errors.message(e);
  }

  public static void main(String[] args) {
    preload();
    CommandLine cl = commandLine(args);
    String unknown = unknownCommand(cl, args);
    if (unknown != null) {
      System.err.println(unknown);
      System.exit(2);
    }
    System.exit(cl.execute(args));
  }

  /**
   * The error for a first word that is not a command (nor an option) followed by a help or version
   * option, or null: picocli would print the top-level help and exit 0 for {@code jqcowfs
   * frobnicate --help}. (Without such an option picocli's own error says "did you mean".)
   */
  static String unknownCommand(CommandLine cl, String[] args) {
    if (args.length == 0 || args[0].startsWith("-") || cl.getSubcommands().containsKey(args[0])) {
      return null;
    }
    if (!List.of(args).stream()
        .anyMatch(a -> List.of("-h", "--help", "-V", "--version").contains(a))) {
      return null;
    }
    return "jqcowfs: unknown command '"
        + args[0]
        + "' (the commands: "
        + String.join(", ", cl.getSubcommands().keySet())
        + "; see jqcowfs --help)";
  }

  /**
   * Readies, on a second thread while picocli reads the command line, what every command that opens
   * an image needs next: the qcow2 core's libc binding ({@link Posix}, for the image's lock; jffi's
   * native library is loaded then) and SLF4J, whose set-up looks through the class path for a
   * provider (13 ms on the main thread, in a logged start of a convert). A failure is left to the
   * thread that uses them, where it is reported.
   */
  private static void preload() {
    Thread t =
        new Thread(
            () -> {
              try {
                Posix.load();
                LoggerFactory.getILoggerFactory();
              } catch (LinkageError e) {
                // reported where the binding is used
              }
            },
            "jqcowfs-preload");
    t.setDaemon(true);
    t.start();
  }
}
