package org.jqcowfs.qcow2;

import java.io.Closeable;
import java.io.IOException;

/** Closing several resources where one failing must not leave the others open. */
public final class Closeables {
  private Closeables() {}

  /**
   * Closes every resource, in order, even when some fail.
   *
   * @throws IOException the first failure, with the later ones suppressed in it
   */
  public static void closeAll(Iterable<? extends Closeable> resources) throws IOException {
    IOException first = null;
    for (Closeable c : resources) {
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
    if (first != null) {
      throw first;
    }
  }
}
