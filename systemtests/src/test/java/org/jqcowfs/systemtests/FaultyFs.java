package org.jqcowfs.systemtests;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import jnr.ffi.Pointer;
import jnr.ffi.types.off_t;
import jnr.ffi.types.size_t;
import org.jqcowfs.fuse.transport.FuseMount;
import ru.serce.jnrfuse.ErrorCodes;
import ru.serce.jnrfuse.FuseFillDir;
import ru.serce.jnrfuse.FuseStubFS;
import ru.serce.jnrfuse.struct.FileStat;
import ru.serce.jnrfuse.struct.FuseFileInfo;

/**
 * A test filesystem (jnr-fuse, in the test's JVM) that shows one real file and fails reads of a
 * chosen byte range with EIO while told to, or answers every read late: a disk with a bad sector,
 * or a slow one, for the image jqcowfs reads. Mounted with {@code direct_io}, so no page cache
 * hides a failure or its repair.
 */
final class FaultyFs extends FuseStubFS implements AutoCloseable {
  private final Path file;
  private final String name;
  private final Path mountpoint;
  private final FileChannel channel;
  private volatile long badStart = -1;
  private volatile long badEnd = -1;
  private volatile long failedReads;
  private volatile long delayMillis;

  private FaultyFs(Path file, Path mountpoint) throws IOException {
    this.file = file;
    this.name = "/" + file.getFileName();
    this.mountpoint = mountpoint;
    this.channel = FileChannel.open(file, StandardOpenOption.READ);
  }

  /** Shows {@code file} as {@code mountpoint/NAME}; returns once mounted. */
  static FaultyFs mount(Path file, Path mountpoint) throws IOException, InterruptedException {
    FaultyFs fs = new FaultyFs(file, mountpoint);
    fs.mount(mountpoint, false, false, new String[] {"-o", "direct_io,ro,subtype=faulty"});
    long deadline = System.nanoTime() + 20_000_000_000L;
    while (FuseMount.mountEntry(mountpoint).isEmpty()) {
      if (System.nanoTime() > deadline) {
        throw new IOException("faulty fs did not mount on " + mountpoint);
      }
      Thread.sleep(20);
    }
    return fs;
  }

  /** The file as seen through this filesystem. */
  Path path() {
    return mountpoint.resolve(file.getFileName());
  }

  /** Reads touching {@code [start, end)} fail with EIO from now on. */
  void fail(long start, long end) {
    badEnd = end;
    badStart = start;
  }

  /** Every read is answered {@code millis} late from now on (0: at once again): a slow disk. */
  void delay(long millis) {
    delayMillis = millis;
  }

  /** Reads work again. */
  void heal() {
    badStart = -1;
    badEnd = -1;
  }

  /** Reads answered EIO so far. */
  long failedReads() {
    return failedReads;
  }

  @Override
  public int getattr(String path, FileStat stat) {
    if (path.equals("/")) {
      stat.st_mode.set(FileStat.S_IFDIR | 0555);
      stat.st_nlink.set(2);
      return 0;
    }
    if (!path.equals(name)) {
      return -ErrorCodes.ENOENT();
    }
    try {
      stat.st_mode.set(FileStat.S_IFREG | 0444);
      stat.st_nlink.set(1);
      long size = Files.size(file);
      stat.st_size.set(size);
      stat.st_blocks.set(size / 512); // shown fully allocated: SEEK_DATA is not what is tested
      return 0;
    } catch (IOException e) {
      return -ErrorCodes.EIO();
    }
  }

  @Override
  public int readdir(
      String path, Pointer buf, FuseFillDir filter, @off_t long offset, FuseFileInfo fi) {
    filter.apply(buf, ".", null, 0);
    filter.apply(buf, "..", null, 0);
    filter.apply(buf, name.substring(1), null, 0);
    return 0;
  }

  @Override
  public int open(String path, FuseFileInfo fi) {
    return path.equals(name) ? 0 : -ErrorCodes.ENOENT();
  }

  @Override
  public int read(
      String path, Pointer buf, @size_t long size, @off_t long offset, FuseFileInfo fi) {
    long millis = delayMillis;
    if (millis > 0) {
      try {
        Thread.sleep(millis);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        return -ErrorCodes.EINTR();
      }
    }
    long start = badStart;
    long end = badEnd;
    if (start >= 0 && offset < end && offset + size > start) {
      failedReads++;
      return -ErrorCodes.EIO();
    }
    try {
      ByteBuffer b = ByteBuffer.allocate((int) size);
      int n = Math.max(0, channel.read(b, offset));
      buf.put(0, b.array(), 0, n);
      return n;
    } catch (IOException e) {
      return -ErrorCodes.EIO();
    }
  }

  @Override
  public void close() throws IOException {
    umount(); // jnr-fuse starts fusermount -u -z and does not wait for it
    long deadline = System.nanoTime() + 20_000_000_000L;
    while (FuseMount.mountEntry(mountpoint).isPresent() && System.nanoTime() < deadline) {
      try {
        Thread.sleep(20);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    channel.close();
  }
}
