package org.jqcowfs.fuse.transport;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import jnr.ffi.Pointer;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import org.jqcowfs.fuse.filesystem.Attributes;
import org.jqcowfs.fuse.filesystem.FlatFile;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;
import org.jqcowfs.fuse.filesystem.FsStats;
import org.jqcowfs.fuse.filesystem.MountOptions;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.fuse.protocol.FuseException;
import ru.serce.jnrfuse.FuseFillDir;
import ru.serce.jnrfuse.FuseStubFS;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.FuseFileInfo;
import ru.serce.jnrfuse.struct.Statvfs;
import ru.serce.jnrfuse.struct.Timespec;

/**
 * The portable backend: the same {@link FlatFileSystem} through jnr-fuse and libfuse2 ({@code
 * --backend jnr-fuse}). Limits, from libfuse 2.9: no {@code lseek} operation, so the kernel's
 * SEEK_DATA/SEEK_HOLE fall back to "all data" and {@code cp --sparse} reads every byte; requests of
 * at most 128 KiB; each read and write is copied once between libfuse's buffer and a Java one.
 * Writable ({@code --rw}) as the kernel backend is: the same {@link FlatFileSystem} calls.
 */
public final class JnrFuseBackend extends FuseStubFS implements Mounted {
  private static final long MOUNT_TIMEOUT_MILLIS = 30_000;

  private final FlatFileSystem fs;
  private final Path mnt;
  private final ThreadLocal<ByteBuffer> buffers =
      ThreadLocal.withInitial(() -> ByteBuffer.allocate(128 * 1024));
  private Thread loop;
  private volatile Throwable loopFailure;
  private volatile boolean stopped;

  private JnrFuseBackend(FlatFileSystem fs, Path mnt) {
    this.fs = fs;
    this.mnt = mnt;
  }

  /**
   * Mounts {@code fs} on {@code mountpoint} through libfuse2 and returns once the mount is in the
   * mount table.
   *
   * @throws IOException if libfuse cannot mount (its own message is on stderr)
   */
  public static JnrFuseBackend mount(
      FlatFileSystem fs, Path mountpoint, MountOptions options, boolean debug) throws IOException {
    Path mnt = mountpoint.toAbsolutePath().normalize();
    if (!java.nio.file.Files.isDirectory(mnt)) {
      throw new IOException(mnt + ": not a directory");
    }
    JnrFuseBackend b = new JnrFuseBackend(fs, mnt);
    List<String> opts = new ArrayList<>();
    opts.add("-o");
    // big_writes: libfuse2 otherwise splits writes into 4 KiB requests
    String o = options.writable() ? "rw,big_writes" : "ro";
    o += ",nosuid,nodev,default_permissions,subtype=jqcowfs,fsname=" + options.fsname();
    o += options.allowOther() ? ",allow_other" : "";
    o += options.noexec() ? ",noexec" : "";
    o += options.noatime() ? ",noatime" : "";
    opts.add(o);
    b.loop =
        new Thread(
            () -> {
              try {
                b.mount(mnt, true, debug, opts.toArray(String[]::new));
              } catch (Throwable e) {
                b.loopFailure = e;
              }
            },
            "jnr-fuse-loop");
    b.loop.setDaemon(true);
    b.loop.start();
    long deadline = System.currentTimeMillis() + MOUNT_TIMEOUT_MILLIS;
    while (FuseMount.mountEntry(mnt).filter(e -> e.fstype().startsWith("fuse")).isEmpty()) {
      if (!b.loop.isAlive() || System.currentTimeMillis() > deadline) {
        String why = b.loopFailure != null ? ": " + b.loopFailure.getMessage() : "";
        throw new IOException(mnt + ": libfuse did not mount" + why);
      }
      try {
        Thread.sleep(20);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IOException("interrupted while mounting", e);
      }
    }
    return b;
  }

  @Override
  protected String getFSName() {
    return "jqcowfs";
  }

  @Override
  public Path mountpoint() {
    return mnt;
  }

  @Override
  public void awaitUnmounted() throws InterruptedException {
    loop.join();
  }

  @Override
  public void stop() {
    if (stopped) {
      return;
    }
    stopped = true;
    FuseMount.unmountOrDetach(mnt);
    try {
      loop.join(5_000);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  /** This thread's heap buffer, cleared, its limit {@code bytes}. */
  private ByteBuffer buffer(long bytes) {
    ByteBuffer b = buffers.get();
    if (b.capacity() < bytes) {
      b = ByteBuffer.allocate((int) bytes);
      buffers.set(b);
    }
    return b.clear().limit((int) bytes);
  }

  /** The inode of {@code path}: the root, or a flat file in it. */
  private long inode(String path) {
    if (path.equals("/")) {
      return FlatFileSystem.ROOT_INODE;
    }
    String name = path.substring(1);
    if (name.contains("/")) {
      throw new FuseException(Errno.ENOENT, path);
    }
    return fs.lookup(name).inode();
  }

  @Override
  public int getattr(String path, FileStat stat) {
    try {
      Attributes a = fs.attributes(inode(path));
      stat.st_ino.set(a.inode());
      stat.st_mode.set(a.mode());
      stat.st_uid.set(a.uid());
      stat.st_gid.set(a.gid());
      stat.st_nlink.set(a.nlink());
      stat.st_size.set(a.size());
      stat.st_blocks.set(a.blocks());
      stat.st_mtim.tv_sec.set(a.mtimeMillis() / 1000);
      stat.st_ctim.tv_sec.set(a.mtimeMillis() / 1000);
      stat.st_atim.tv_sec.set(a.mtimeMillis() / 1000);
      return 0;
    } catch (Throwable e) {
      return -Errno.of(e, "getattr " + path);
    }
  }

  @Override
  public int readdir(
      String path, Pointer buf, FuseFillDir filter, @off_t long offset, FuseFileInfo fi) {
    if (!path.equals("/")) {
      return -Errno.ENOTDIR;
    }
    filter.apply(buf, ".", null, 0);
    filter.apply(buf, "..", null, 0);
    for (FlatFile f : fs.files()) {
      filter.apply(buf, f.name(), null, 0);
    }
    return 0;
  }

  @Override
  public int open(String path, FuseFileInfo fi) {
    try {
      fs.checkOpen(inode(path), fi.flags.get());
      return 0;
    } catch (Throwable e) {
      return -Errno.of(e, "open " + path);
    }
  }

  @Override
  public int read(
      String path, Pointer buf, @size_t long size, @off_t long offset, FuseFileInfo fi) {
    try {
      FlatFile f = fs.file(inode(path));
      ByteBuffer b = buffer(size);
      int n = fs.read(f, b, offset);
      buf.put(0, b.array(), 0, n);
      return n;
    } catch (Throwable e) {
      return -Errno.of(e, "read " + path + " at " + offset);
    }
  }

  @Override
  public int write(
      String path, Pointer buf, @size_t long size, @off_t long offset, FuseFileInfo fi) {
    try {
      FlatFile f = fs.file(inode(path));
      ByteBuffer b = buffer(size);
      buf.get(0, b.array(), 0, (int) size);
      return f.write(b, offset);
    } catch (Throwable e) {
      return -Errno.of(e, "write " + path + " at " + offset);
    }
  }

  @Override
  public int fallocate(
      String path, int mode, @off_t long offset, @off_t long length, FuseFileInfo fi) {
    try {
      fs.file(inode(path)).fallocate(mode, offset, length);
      return 0;
    } catch (Throwable e) {
      return -Errno.of(e, "fallocate " + path + " at " + offset);
    }
  }

  @Override
  public int fsync(String path, int isdatasync, FuseFileInfo fi) {
    return fsyncInode(path);
  }

  @Override
  public int fsyncdir(String path, FuseFileInfo fi) {
    return fsyncInode(path);
  }

  private int fsyncInode(String path) {
    try {
      fs.fsync(inode(path));
      return 0;
    } catch (Throwable e) {
      return -Errno.of(e, "fsync " + path);
    }
  }

  @Override
  public int truncate(String path, @off_t long size) {
    return attributeChange(path, size, -1, -1, -1);
  }

  @Override
  public int ftruncate(String path, @off_t long size, FuseFileInfo fi) {
    return attributeChange(path, size, -1, -1, -1);
  }

  @Override
  public int chmod(String path, long mode) {
    return attributeChange(path, -1, (int) mode, -1, -1);
  }

  @Override
  public int chown(String path, long uid, long gid) {
    return attributeChange(path, -1, -1, (int) uid, (int) gid);
  }

  /** Times are accepted and left as they are (the image file's), as the kernel backend does. */
  @Override
  public int utimens(String path, Timespec[] timespec) {
    try {
      inode(path);
      return 0;
    } catch (Throwable e) {
      return -Errno.of(e, "utimens " + path);
    }
  }

  private int attributeChange(String path, long size, int mode, int uid, int gid) {
    try {
      fs.checkAttributeChange(inode(path), size, mode, uid, gid);
      return 0;
    } catch (Throwable e) {
      return -Errno.of(e, "setattr " + path);
    }
  }

  @Override
  public int statfs(String path, Statvfs st) {
    FsStats stats = fs.stats();
    st.f_bsize.set(stats.blockBytes());
    st.f_frsize.set(stats.blockBytes());
    st.f_blocks.set(stats.blocks());
    st.f_files.set(stats.files());
    st.f_namemax.set(stats.nameMax());
    return 0;
  }

  @Override
  public int getxattr(String path, String name, Pointer value, @size_t long size) {
    try {
      byte[] v = fs.xattr(inode(path), name);
      if (size == 0) {
        return v.length;
      }
      if (size < v.length) {
        return -Errno.ERANGE;
      }
      value.put(0, v, 0, v.length);
      return v.length;
    } catch (Throwable e) {
      return -Errno.of(e, "getxattr " + path);
    }
  }

  @Override
  public int access(String path, int mask) {
    try {
      fs.checkAccess(inode(path), mask);
      return 0;
    } catch (Throwable e) {
      return -Errno.of(e, "access " + path);
    }
  }
}
