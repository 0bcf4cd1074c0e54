package org.jqcowfs.cli.options;

import java.io.PrintWriter;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;

/** The one line a command prints after "jqcowfs: " for an error. */
public final class Errors {
  private Errors() {}

  /** The message for {@code e}: the file and the reason for the JDK's file errors. */
  public static String message(Throwable e) {
    if (e instanceof NoSuchFileException n) {
      return n.getFile() + ": " + (n.getReason() != null ? n.getReason() : "no such file");
    }
    if (e instanceof AccessDeniedException a) {
      return a.getFile() + ": permission denied";
    }
    String m = e.getMessage();
    return m != null ? m : e.getClass().getSimpleName();
  }

  /** Prints "jqcowfs: " and {@code message} on {@code err}; returns exit status 1. */
  public static int fail(PrintWriter err, String message) {
    err.println("jqcowfs: " + message);
    err.flush();
    return 1;
  }
}
