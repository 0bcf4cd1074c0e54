package org.jqcowfs.fuse.transport;

import java.io.IOException;
import java.nio.file.Path;
import java.util.concurrent.atomic.AtomicBoolean;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;
import org.jqcowfs.fuse.filesystem.MountOptions;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The main backend: jqcowfs's own FUSE kernel protocol ({@link FuseSession}) on a {@link
 * FuseMount}. SEEK_DATA/SEEK_HOLE, 1 MiB requests, parallel workers.
 */
public final class KernelBackend implements Mounted {
  private static final Logger LOG = LoggerFactory.getLogger(KernelBackend.class);

  /** Readahead for the mount, in KiB: {@link FlatFileSystem#READ_AHEAD_KIB}. */
  static final int READ_AHEAD_KIB = FlatFileSystem.READ_AHEAD_KIB;

  private static final long INIT_TIMEOUT_MILLIS = 30_000;

  private final FuseMount mount;
  private final FuseSession session;
  private final AtomicBoolean mounted = new AtomicBoolean(true);

  private KernelBackend(FuseMount mount, FuseSession session) {
    this.mount = mount;
    this.session = session;
  }

  /**
   * Mounts {@code fs} on {@code mountpoint} and serves it with {@code threads} workers; returns
   * once the kernel's FUSE_INIT is answered, so the files are readable.
   *
   * @throws IOException naming the mountpoint if the mount fails; nothing is left mounted
   */
  public static KernelBackend mount(
      FlatFileSystem fs, Path mountpoint, MountOptions options, int threads, boolean debug)
      throws IOException {
    FuseMount mount = FuseMount.mount(mountpoint, options);
    FuseSession session = new FuseSession(mount.devFd(), fs, threads, debug);
    try {
      session.start();
      boolean initialized;
      try {
        initialized = session.awaitInit(INIT_TIMEOUT_MILLIS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while mounting", e);
      }
      if (!initialized) {
        throw new IOException(mount.mountpoint() + ": the kernel sent no FUSE_INIT");
      }
    } catch (IOException | RuntimeException e) {
      try {
        FuseMount.unmount(mount.mountpoint(), true);
      } catch (IOException suppressed) {
        e.addSuppressed(suppressed);
      }
      session.close();
      mount.closeFds();
      throw e;
    }
    mount.raiseReadahead(READ_AHEAD_KIB);
    return new KernelBackend(mount, session);
  }

  @Override
  public Path mountpoint() {
    return mount.mountpoint();
  }

  @Override
  public void awaitUnmounted() throws InterruptedException {
    session.awaitEnd();
    if (mounted.compareAndSet(true, false)) {
      release();
    }
  }

  @Override
  public void stop() {
    if (!mounted.compareAndSet(true, false)) {
      return;
    }
    FuseMount.unmountOrDetach(mount.mountpoint());
    try {
      if (!session.awaitEnd(5_000)) {
        LOG.warn("{}: files still open; they will fail with ENOTCONN", mount.mountpoint());
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    release();
  }

  private void release() {
    session.close();
    mount.closeFds();
  }
}
