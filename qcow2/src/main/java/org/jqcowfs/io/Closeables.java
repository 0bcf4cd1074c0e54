package org.jqcowfs.io;

import java.io.Closeable;
import java.io.IOException;

/** Closing several resources where one failing must not leave the others open. */
public final class Closeables {
  private Closeables() {}

  /**
   * Closes every resource of every group, in order, even when some fail.
   *
   * @throws IOException the first failure, with the later ones suppressed in it
   */
  @SafeVarargs
  public static void closeAll(Iterable<? extends Closeable>... groups) throws IOException {
    IOException first = null;
    for (Iterable<? extends Closeable> group : groups) {
      for (Closeable c : group) {
        try {
          c.close();
        } catch (IOException e) {
          if (first == null) {
            first = e;
          } else {
            first.addSuppressed(e);
          }
        }
      }
    }
    if (first != null) {
      throw first;
    }
  }
}
