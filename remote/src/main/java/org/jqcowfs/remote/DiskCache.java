package org.jqcowfs.remote;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.zip.CRC32C;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Fetched blocks of one remote object kept on disk across opens ({@code --cache-dir}): a sparse
 * file holding each block at its own offset, and an index of 8 bytes per block (a present flag and
 * the block's CRC32C). Both are named by the SHA-256 of the object's identity: its URL, the
 * validator pinned at open and its length, so that a replaced object is never read from here and a
 * pre-signed URL's query is not written in a file name. Nothing is synced: a block whose bytes do
 * not match its checksum after a crash is fetched again. Files are made 0600 in a directory made
 * 0700. Thread-safe: positional reads and writes, no lock.
 */
final class DiskCache implements Closeable {
  private static final Logger LOG = LoggerFactory.getLogger(DiskCache.class);
  private static final long PRESENT = 1L << 32;

  private final FileChannel blocks;
  private final FileChannel index;
  private final int blockBytes;
  private volatile boolean failed;

  private DiskCache(FileChannel blocks, FileChannel index, int blockBytes) {
    this.blocks = blocks;
    this.index = index;
    this.blockBytes = blockBytes;
  }

  /**
   * The cache of the object {@code identity} names in {@code dir}, made when missing.
   *
   * @param identity the object's URL, validator and length: what must match to reuse the blocks
   * @throws IOException if the directory or the files cannot be made or opened, naming them
   */
  static DiskCache open(Path dir, String identity, int blockBytes) throws IOException {
    if (!Files.isDirectory(dir)) {
      Files.createDirectories(
          dir, PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
    }
    String name = sha256(identity);
    var attrs = PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rw-------"));
    var options =
        java.util.Set.of(
            StandardOpenOption.CREATE, StandardOpenOption.READ, StandardOpenOption.WRITE);
    FileChannel blocks = FileChannel.open(dir.resolve(name + ".blocks"), options, attrs);
    try {
      FileChannel index = FileChannel.open(dir.resolve(name + ".index"), options, attrs);
      return new DiskCache(blocks, index, blockBytes);
    } catch (IOException e) {
      blocks.close();
      throw e;
    }
  }

  /**
   * Block {@code i} ({@code bytes} long: the last block of an object may be short), or null when it
   * is not here or its bytes do not match its checksum.
   */
  byte[] get(long i, int bytes) {
    if (failed) {
      return null;
    }
    try {
      ByteBuffer entry = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      if (index.read(entry, i * 8) != 8) {
        return null;
      }
      long e = entry.getLong(0);
      if ((e & PRESENT) == 0) {
        return null;
      }
      ByteBuffer data = ByteBuffer.allocate(bytes);
      long pos = i * blockBytes;
      while (data.hasRemaining()) {
        if (blocks.read(data, pos + data.position()) < 0) {
          return null;
        }
      }
      CRC32C crc = new CRC32C();
      crc.update(data.array());
      return (int) crc.getValue() == (int) e ? data.array() : null;
    } catch (IOException ex) {
      disable(ex);
      return null;
    }
  }

  /**
   * Keeps block {@code i}, {@code bytes} bytes of {@code data} at {@code from}: bytes, then index.
   */
  void put(long i, byte[] data, int from, int bytes) {
    if (failed) {
      return;
    }
    try {
      ByteBuffer src = ByteBuffer.wrap(data, from, bytes);
      long pos = i * blockBytes - from;
      while (src.hasRemaining()) {
        blocks.write(src, pos + src.position());
      }
      CRC32C crc = new CRC32C();
      crc.update(data, from, bytes);
      ByteBuffer entry = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
      entry.putLong(0, PRESENT | (crc.getValue() & 0xffffffffL));
      index.write(entry, i * 8);
    } catch (IOException ex) {
      disable(ex);
    }
  }

  /** A full disk or a failing one costs the cache, never a read. */
  private void disable(IOException e) {
    if (!failed) {
      failed = true;
      LOG.warn("on-disk cache off for this image: {}", e.toString());
    }
  }

  @Override
  public void close() throws IOException {
    try {
      blocks.close();
    } finally {
      index.close();
    }
  }

  private static String sha256(String s) {
    try {
      return HexFormat.of()
          .formatHex(
              MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8)));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException(e);
    }
  }
}
