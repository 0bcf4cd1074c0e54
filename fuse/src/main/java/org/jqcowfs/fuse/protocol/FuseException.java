package org.jqcowfs.fuse.protocol;

/** An operation's answer that is an error number, not a failure: ENOENT, EROFS, ENXIO... */
public final class FuseException extends RuntimeException {
  private final int errno;

  public FuseException(int errno, String message) {
    super(message, null, false, false);
    this.errno = errno;
  }

  /** The positive errno value. */
  public int errno() {
    return errno;
  }
}
