package org.jqcowfs.readahead;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.Location;

/**
 * An {@link Image} that reads ahead for sequential readers: each {@link ReadAheadStream} (one per
 * open file) reads the windows after a sequential reader's position in the background. Reads
 * through this image itself go through one shared stream. Block status, views and sizes are the
 * wrapped image's. A writer of the wrapped image calls {@link #invalidate} after each write, so
 * that no read that starts after the write is served from a window read before it.
 *
 * <p>Thread-safe. Closing it ends its streams and closes the wrapped image.
 */
public final class ReadAheadImage implements Image {
  private final Image image;
  private final long kernelReadAheadBytes;
  private final Set<ReadAheadStream> streams = ConcurrentHashMap.newKeySet();
  private final ReadAheadStream shared;

  /**
   * @param image the image read ahead in; owned from now on
   * @param kernelReadAheadBytes the kernel's readahead for the file served, in bytes: a stream
   *     keeps windows twice that far behind it for READs answered late
   */
  public ReadAheadImage(Image image, long kernelReadAheadBytes) {
    this.image = image;
    this.kernelReadAheadBytes = kernelReadAheadBytes;
    this.shared = openStream();
  }

  /** A new stream of reads (one open file); the caller closes it. */
  public ReadAheadStream openStream() {
    ReadAheadStream s = new ReadAheadStream(this, image, kernelReadAheadBytes);
    streams.add(s);
    return s;
  }

  void closed(ReadAheadStream s) {
    streams.remove(s);
  }

  /**
   * Drops every window, read or being read, that overlaps {@code [guestOffset, guestOffset +
   * length)}: reads that start after this returns see what the wrapped image holds now.
   *
   * @param guestOffset offset in bytes
   * @param length bytes
   */
  public void invalidate(long guestOffset, long length) {
    for (ReadAheadStream s : streams) {
      s.invalidate(guestOffset, length);
    }
  }

  /** The image read ahead in. */
  public Image image() {
    return image;
  }

  @Override
  public long size() {
    return image.size();
  }

  @Override
  public Location location() {
    return image.location();
  }

  @Override
  public long hostBytes() throws IOException {
    return image.hostBytes();
  }

  @Override
  public boolean writable() {
    return image.writable();
  }

  /** Writes through to the image, then drops the windows that held the range. */
  @Override
  public void write(ByteBuffer src, long guestOffset) throws IOException {
    long bytes = src.remaining();
    try {
      image.write(src, guestOffset);
    } finally {
      invalidate(guestOffset, bytes);
    }
  }

  @Override
  public void writeZeroes(long guestOffset, long bytes, boolean mayUnmap) throws IOException {
    try {
      image.writeZeroes(guestOffset, bytes, mayUnmap);
    } finally {
      invalidate(guestOffset, bytes);
    }
  }

  @Override
  public void punchHole(long guestOffset, long bytes) throws IOException {
    try {
      image.punchHole(guestOffset, bytes);
    } finally {
      invalidate(guestOffset, bytes);
    }
  }

  @Override
  public void discard(long guestOffset, long bytes) throws IOException {
    try {
      image.discard(guestOffset, bytes);
    } finally {
      invalidate(guestOffset, bytes);
    }
  }

  @Override
  public void flush() throws IOException {
    image.flush();
  }

  /** As {@link Image#read}, through the shared stream's windows. */
  @Override
  public void read(ByteBuffer dst, long guestOffset) throws IOException {
    Image.checkRange(guestOffset, dst.remaining(), size());
    shared.read(dst, guestOffset);
  }

  @Override
  public CachedView cachedView(long guestOffset, int length) throws IOException {
    return image.cachedView(guestOffset, length);
  }

  @Override
  public Extent blockStatus(long guestOffset, long maxLength) throws IOException {
    return image.blockStatus(guestOffset, maxLength);
  }

  @Override
  public void close() throws IOException {
    for (ReadAheadStream s : streams) {
      s.close();
    }
    image.close();
  }
}
