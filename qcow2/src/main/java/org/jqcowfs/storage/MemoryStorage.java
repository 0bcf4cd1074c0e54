package org.jqcowfs.storage;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.NonWritableChannelException;
import java.nio.file.NoSuchFileException;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.locks.ReadWriteLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * Storage in memory: named objects of a {@link Store}, for tests and for images built in memory. It
 * has none of the optional capabilities, so code that runs over it runs without them. Objects live
 * as long as their store; nothing is durable, and {@link #flush} does nothing. Thread-safe: reads
 * share a lock, writes that change the length take it alone.
 */
public final class MemoryStorage implements Storage {
  private final MemoryLocation location;
  private final Bytes bytes;
  private final boolean writable;

  private MemoryStorage(MemoryLocation location, Bytes bytes, boolean writable) {
    this.location = location;
    this.bytes = bytes;
    this.writable = writable;
  }

  /** A set of named objects in memory, and the opener of their storage. No locks. */
  public static final class Store implements StorageOpener {
    private final Map<String, Bytes> objects = new ConcurrentHashMap<>();

    /** The location of the object {@code name} in this store (it need not exist yet). */
    public Location location(String name) {
      return new MemoryLocation(this, name);
    }

    /** Makes (or replaces) the object {@code name} with a copy of {@code content}. */
    public Location put(String name, byte[] content) {
      objects.put(name, new Bytes(content.clone()));
      return location(name);
    }

    /** A copy of the object {@code name}'s bytes. */
    public byte[] get(String name) throws NoSuchFileException {
      Bytes b = objects.get(name);
      if (b == null) {
        throw new NoSuchFileException(name, null, "no such object in memory");
      }
      b.lock.readLock().lock();
      try {
        return Arrays.copyOf(b.data, b.length);
      } finally {
        b.lock.readLock().unlock();
      }
    }

    @Override
    public Storage open(Location location, boolean writable) throws IOException {
      if (!(location instanceof MemoryLocation m) || m.store() != this) {
        throw new IOException(location + ": not an object of this memory store");
      }
      Bytes b = objects.get(m.name());
      if (b == null) {
        throw new NoSuchFileException(location.toString(), null, "no such object in memory");
      }
      return new MemoryStorage(m, b, writable);
    }

    @Override
    public Closeable lock(Location location, boolean writer) {
      return () -> {};
    }
  }

  /**
   * An object of a memory store. Names are flat: a stored name resolves to the object of that name
   * in the same store.
   *
   * @param store the store
   * @param name the object's name; empty for the store itself (a directory)
   */
  public record MemoryLocation(Store store, String name) implements Location {
    @Override
    public Location resolve(String other) {
      return new MemoryLocation(store, other);
    }

    @Override
    public Location directory() {
      return new MemoryLocation(store, "");
    }

    @Override
    public boolean isInside(Location dir) {
      return dir instanceof MemoryLocation d && d.store() == store && d.name().isEmpty();
    }

    @Override
    public Location real() {
      return this;
    }

    @Override
    public Location realDirectory() throws IOException {
      if (!name.isEmpty()) {
        throw new IOException(this + ": allowed directory is not a memory store");
      }
      return this;
    }

    @Override
    public boolean exists() {
      return name.isEmpty() || store.objects.containsKey(name);
    }

    @Override
    public String toString() {
      return "memory:" + name;
    }
  }

  /** One object's bytes: the first {@code length} of {@code data}. */
  private static final class Bytes {
    final ReadWriteLock lock = new ReentrantReadWriteLock();
    byte[] data;
    int length;

    Bytes(byte[] data) {
      this.data = data;
      this.length = data.length;
    }
  }

  @Override
  public Location location() {
    return location;
  }

  @Override
  public long length() {
    bytes.lock.readLock().lock();
    try {
      return bytes.length;
    } finally {
      bytes.lock.readLock().unlock();
    }
  }

  @Override
  public void readFully(ByteBuffer dst, long position) throws IOException {
    bytes.lock.readLock().lock();
    try {
      if (position < 0 || position > bytes.length - (long) dst.remaining()) {
        throw new IOException(
            location
                + ": read of [0x"
                + Long.toHexString(position)
                + ", +"
                + dst.remaining()
                + ") runs past the end (0x"
                + Integer.toHexString(bytes.length)
                + ")");
      }
      dst.put(bytes.data, (int) position, dst.remaining());
    } finally {
      bytes.lock.readLock().unlock();
    }
  }

  @Override
  public int readUpTo(ByteBuffer dst, long position) {
    bytes.lock.readLock().lock();
    try {
      int n = (int) Math.max(0, Math.min(dst.remaining(), bytes.length - position));
      dst.put(bytes.data, (int) position, n);
      return n;
    } finally {
      bytes.lock.readLock().unlock();
    }
  }

  @Override
  public void write(ByteBuffer src, long position) throws IOException {
    checkWritable();
    int n = src.remaining();
    grow(position + n);
    bytes.lock.readLock().lock(); // writes to different ranges may run at once
    try {
      src.get(bytes.data, (int) position, n);
    } finally {
      bytes.lock.readLock().unlock();
    }
  }

  /** Grows the object to at least {@code end} bytes; the new bytes are zeros. */
  private void grow(long end) throws IOException {
    if (end > Integer.MAX_VALUE - 8) {
      throw new IOException(location + ": " + end + " bytes is more than memory storage holds");
    }
    bytes.lock.writeLock().lock();
    try {
      if (end > bytes.length) {
        if (end > bytes.data.length) {
          bytes.data = Arrays.copyOf(bytes.data, (int) Math.max(end, bytes.data.length * 2L));
        }
        bytes.length = (int) end;
      }
    } finally {
      bytes.lock.writeLock().unlock();
    }
  }

  @Override
  public void flush() {
    checkWritable();
  }

  @Override
  public void punchHole(long position, long length) {
    checkWritable();
    bytes.lock.readLock().lock();
    try {
      int from = (int) Math.min(position, bytes.length);
      int to = (int) Math.min(position + length, bytes.length);
      Arrays.fill(bytes.data, from, to, (byte) 0);
    } finally {
      bytes.lock.readLock().unlock();
    }
  }

  @Override
  public void setLength(long newLength) throws IOException {
    checkWritable();
    grow(newLength);
    bytes.lock.writeLock().lock();
    try {
      if (newLength < bytes.length) {
        Arrays.fill(bytes.data, (int) newLength, bytes.length, (byte) 0);
        bytes.length = (int) newLength;
      }
    } finally {
      bytes.lock.writeLock().unlock();
    }
  }

  private void checkWritable() {
    if (!writable) {
      throw new NonWritableChannelException();
    }
  }

  @Override
  public void close() {}
}
