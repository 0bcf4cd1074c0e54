package org.jqcowfs.fuse.protocol;

import java.io.IOException;
import java.nio.file.AccessDeniedException;
import java.nio.file.NoSuchFileException;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Linux errno values (asm-generic/errno-base.h and errno.h; the core's native calls name the same),
 * and the one place where an exception from an operation becomes the errno the kernel is answered
 * with.
 */
public final class Errno {
  private static final Logger LOG = LoggerFactory.getLogger(Errno.class);

  public static final int EPERM = 1;
  public static final int ENOENT = 2;
  public static final int EINTR = 4;
  public static final int EIO = 5;
  public static final int ENXIO = 6;
  public static final int EBADF = 9;
  public static final int EAGAIN = 11;
  public static final int ENOMEM = 12;
  public static final int EACCES = 13;
  public static final int EBUSY = 16;
  public static final int ENOTDIR = 20;
  public static final int EISDIR = 21;
  public static final int EINVAL = 22;
  public static final int ENOTTY = 25;
  public static final int EROFS = 30;
  public static final int ENOSPC = 28;
  public static final int EFBIG = 27;
  public static final int EOPNOTSUPP = 95;
  public static final int ERANGE = 34;
  public static final int ENOSYS = 38;
  public static final int ENODATA = 61;
  public static final int ENOTCONN = 107;
  public static final int ENODEV = 19;

  /** Messages already logged, so that a bad range is logged once, not on every read of it. */
  private static final Set<String> LOGGED =
      Collections.newSetFromMap(
          Collections.synchronizedMap(
              new LinkedHashMap<>() {
                @Override
                protected boolean removeEldestEntry(Map.Entry<String, Boolean> eldest) {
                  return size() > 4096;
                }
              }));

  private Errno() {}

  /** Whether the host file system was full: the JDK words ENOSPC as strerror does. */
  private static boolean isNoSpace(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t.getMessage() != null && t.getMessage().contains("No space left on device")) {
        return true;
      }
    }
    return false;
  }

  /**
   * The errno for an operation that failed with {@code e}: the carried errno of a {@link
   * FuseException} (a refused request, EROFS or EPERM, logged once per kind of request), ENOENT,
   * EACCES, EINVAL for a bad argument, and EIO for every other I/O or format error (logged once per
   * message, with the place the message names). Unexpected exceptions are EIO too, logged with
   * their stack.
   */
  public static int of(Throwable e, String context) {
    if (e instanceof FuseException f) {
      if ((f.errno() == EROFS || f.errno() == EPERM) && LOGGED.add(context + ": " + f.errno())) {
        LOG.warn("{}: refused ({}; logged once per kind of request)", context, f.getMessage());
      }
      return f.errno();
    }
    if (e instanceof NoSuchFileException) {
      return ENOENT;
    }
    if (e instanceof AccessDeniedException) {
      return EACCES;
    }
    if (e instanceof IllegalArgumentException) {
      return EINVAL;
    }
    String message = context + ": " + e.getMessage();
    if (e instanceof IOException && isNoSpace(e)) {
      if (LOGGED.add(context + ": ENOSPC")) {
        LOG.warn("{} (ENOSPC; logged once per kind of request)", message);
      }
      return ENOSPC;
    }
    if (e instanceof IOException || e instanceof java.io.UncheckedIOException) {
      if (LOGGED.add(message)) {
        LOG.warn("{} (EIO)", message);
      }
    } else {
      LOG.error("{} (EIO)", message, e);
    }
    return EIO;
  }
}
