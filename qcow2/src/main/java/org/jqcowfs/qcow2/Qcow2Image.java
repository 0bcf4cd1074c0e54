package org.jqcowfs.qcow2;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.List;
import java.util.Optional;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.compress.Decompressor;
import org.jqcowfs.qcow2.crypto.LuksHeader;
import org.jqcowfs.qcow2.crypto.SectorCipher;
import org.jqcowfs.qcow2.format.BitmapDirectory;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.qcow2.metadata.BitmapTables;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.L2Cache;
import org.jqcowfs.qcow2.write.Qcow2Writer;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/**
 * One qcow2 layer: the active image or the read-only view of one internal snapshot. Reads map guest
 * offsets through L1 and cached L2 tables to host clusters (spec section 3), decompress compressed
 * clusters, and read unallocated ranges from the backing image linked at open ({@link
 * #setBacking}). An active image opened writable ({@link HostFileOptions#writable}) also takes
 * writes ({@link Qcow2Writer}) and format changes ({@link #editor}). Thread-safe; no lock is held
 * while data is read or written.
 */
public final class Qcow2Image implements Image {

  private final Location path;
  private final Storage file;
  private final Storage dataFile;
  private final Header header;
  private final Geometry geometry;
  private final long virtualSize;
  private final List<Snapshot> snapshots;
  private final String snapshotDamage;
  private final Snapshot snapshot;
  private final L2Cache l2Cache;
  private final ClusterMapper mapper;
  private final BlockStatus blockStatus;
  private final LayerReader reader;
  private final Qcow2Writer writer;
  private final Closeable writeLock;
  private final SectorCipher cipher; // or null: not encrypted

  /**
   * @param writeLock the writer's lock on the image, or null to open read-only
   * @param cipher the data cipher of an image encrypted with LUKS (its key zeroed at {@link
   *     #close}), or null
   * @param snapshotTableBytes the snapshot table's bytes in the file (for a writer's overlap
   *     checks)
   */
  Qcow2Image(
      Storage file,
      Storage dataFile,
      Header header,
      long[] l1Table,
      long virtualSize,
      List<Snapshot> snapshots,
      String snapshotDamage,
      Snapshot snapshot,
      long l2CacheBytes,
      Closeable writeLock,
      long snapshotTableBytes,
      SectorCipher cipher)
      throws IOException {
    this.path = file.location();
    this.file = file;
    this.dataFile = dataFile;
    this.header = header;
    this.geometry = header.geometry();
    this.virtualSize = virtualSize;
    this.snapshots = snapshots;
    this.snapshotDamage = snapshotDamage;
    this.snapshot = snapshot;
    long cacheBytes =
        l2CacheBytes >= 0 ? l2CacheBytes : L2Cache.defaultBytes(geometry, virtualSize);
    this.l2Cache = new L2Cache(cacheBytes, geometry.clusterSize());
    this.mapper =
        new ClusterMapper(
            file,
            dataFile,
            geometry,
            header.version(),
            l1Table,
            virtualSize,
            l2Cache,
            cipher != null);
    this.blockStatus = new BlockStatus(file, dataFile, header, mapper, cipher != null);
    this.cipher = cipher;
    ClusterDecoder compressed =
        new CompressedClusterReader(
            file, geometry, Decompressor.forType(header.compressionType()), mapper::corrupt);
    ClusterDecoder decoder =
        cipher == null
            ? compressed
            : new EncryptedClusterReader(dataFile, cipher, compressed, header.crypto() == null);
    this.reader = new LayerReader(dataFile, mapper, decoder, blockStatus, virtualSize);
    this.writeLock = writeLock;
    this.writer =
        writeLock == null
            ? null
            : new Qcow2Writer(
                reader, file, header, mapper, l2Cache, snapshots, snapshotTableBytes, cipher);
  }

  /** Opens the active image with default options. */
  public static Qcow2Image open(Path path) throws IOException {
    return open(FileLocation.of(path), Qcow2Options.DEFAULT);
  }

  /** Opens the local file {@code path} as {@link #open(Location, Qcow2Options)} does. */
  public static Qcow2Image open(Path path, Qcow2Options options) throws IOException {
    return open(FileLocation.of(path), options);
  }

  /**
   * Opens a qcow2 image read-only: header, extensions, L1 table and snapshot table are read and
   * checked; the external data file, if any, is opened (named relative to the image, and followed
   * only as {@link Qcow2Options#names} allows). A damaged snapshot table is ignored with a warning
   * ({@link #snapshotTableDamage}) unless a snapshot is asked for.
   *
   * @throws ImageFormatException if the image is refused (message names file, field, value)
   * @throws IOException if a file cannot be opened or read
   */
  public static Qcow2Image open(Location location, Qcow2Options options) throws IOException {
    return Qcow2Opener.open(location, options);
  }

  @Override
  public Location location() {
    return path;
  }

  @Override
  public long size() {
    return virtualSize;
  }

  /** The parsed header. */
  public Header header() {
    return header;
  }

  /** The address geometry. */
  public Geometry geometry() {
    return geometry;
  }

  /** The internal snapshots, in table order; empty when the table is damaged. */
  public List<Snapshot> snapshots() {
    return snapshots;
  }

  /**
   * Why the snapshot table was ignored: it is damaged (the message names the snapshot and field),
   * and the active image was opened without it. Empty when the table was read.
   */
  public Optional<String> snapshotTableDamage() {
    return Optional.ofNullable(snapshotDamage);
  }

  /** The snapshot this view shows, if it is a snapshot view. */
  public Optional<Snapshot> snapshot() {
    return Optional.ofNullable(snapshot);
  }

  /**
   * The persistent dirty bitmaps, as the bitmap directory lists them; none without a bitmaps
   * extension or with a stale one.
   *
   * @throws org.jqcowfs.image.ImageFormatException if the directory is one QEMU refuses to load
   * @throws IOException if the file cannot be read
   */
  public List<BitmapDirectory.Bitmap> bitmaps() throws IOException {
    return BitmapTables.directory(file, header);
  }

  /**
   * Gives {@code sink} the ranges of the disk that bitmap {@code name} marks clean and dirty,
   * tiling it in guest order ({@link BitmapTables#walk}).
   *
   * @throws org.jqcowfs.image.ImageFormatException if there is no such bitmap, or it is in use or
   *     damaged, naming it
   * @throws IOException if the file cannot be read
   */
  public void dirtyExtents(String name, BitmapTables.ExtentSink sink) throws IOException {
    BitmapTables.walk(file, header, name, virtualSize, sink);
  }

  /** The backing file name as stored, if any. */
  public Optional<String> backingFileName() {
    return Optional.ofNullable(header.backingFileName());
  }

  /** The backing format from the header extension, if stored. */
  public Optional<String> backingFormat() {
    return Optional.ofNullable(header.backingFormat());
  }

  /** Where guest data is: the external data file, or the image itself. */
  public Location dataFileLocation() {
    return dataFile.location();
  }

  /**
   * Bytes the image file occupies on disk (qemu-img info's "disk size"); its length where the
   * storage cannot tell ({@link Storage.Allocation}).
   */
  public long allocatedBytes() throws IOException {
    return allocatedBytes(file);
  }

  @Override
  public long hostBytes() throws IOException {
    return allocatedBytes(file) + (dataFile != file ? allocatedBytes(dataFile) : 0);
  }

  private static long allocatedBytes(Storage storage) throws IOException {
    Storage.Allocation a = storage.capability(Storage.Allocation.class);
    return a != null ? a.allocatedBytes() : storage.length();
  }

  /** L2 cache counters. */
  public L2Cache.Stats cacheStats() {
    return l2Cache.stats();
  }

  /**
   * Links the image below ({@link Image#setBacking}). An image whose header names a backing file
   * takes writes only once one is linked, so that new clusters copy what it holds.
   */
  @Override
  public void setBacking(Image backing) {
    reader.setBacking(backing);
  }

  /**
   * As {@link Image#read}, reading ranges this layer does not allocate from the linked backing
   * image (zeros where there is none or it is shorter than this image); {@link LayerReader#read}.
   *
   * @throws ImageFormatException for a corrupt mapping or compressed cluster in the range (naming
   *     L1/L2 place and guest offset)
   * @throws IOException if a host read fails; the whole request fails
   */
  @Override
  public void read(ByteBuffer dst, long guestOffset) throws IOException {
    reader.read(dst, guestOffset);
  }

  /**
   * A view of the page cache's bytes when one host range holds the whole range raw and the cache
   * holds it; null for anything else ({@link LayerReader#cachedView}).
   */
  @Override
  public CachedView cachedView(long guestOffset, int length) throws IOException {
    return reader.cachedView(guestOffset, length);
  }

  @Override
  public boolean writable() {
    return writer != null;
  }

  /**
   * As {@link Image#write} (QEMU {@code qcow2_co_pwritev_part}): new clusters copy what the guest
   * reads around the written bytes (this image, then the linked backing image). A write that would
   * land on metadata is refused and marks the image corrupt.
   *
   * @throws IOException also if the header names a backing file and none is linked
   */
  @Override
  public void write(ByteBuffer src, long guestOffset) throws IOException {
    Image.checkRange(guestOffset, src.remaining(), virtualSize);
    linkedWriter().write(src, guestOffset);
  }

  /**
   * Writes the guest cluster at {@code guestOffset} compressed ({@link
   * Qcow2Writer#writeCompressed}, QEMU {@code qcow2_co_pwritev_compressed_part}), as {@code
   * qemu-img convert -c} writes each cluster of a new image.
   *
   * @throws IllegalArgumentException if the range is not one whole cluster, or the disk's last
   * @throws IOException if the cluster is allocated already, or as {@link #write(ByteBuffer, long)}
   */
  public void writeCompressed(ByteBuffer src, long guestOffset) throws IOException {
    Image.checkRange(guestOffset, src.remaining(), virtualSize);
    linkedWriter().writeCompressed(src, guestOffset);
  }

  /**
   * Makes {@code [guestOffset, guestOffset + bytes)} read as zeros (QEMU {@code
   * qcow2_co_pwrite_zeroes}, {@link Qcow2Writer#writeZeroes}): whole clusters get the zero flag,
   * and with {@code mayUnmap} give their host clusters back; the rest is written as zero data.
   *
   * @throws IllegalArgumentException if the range lies outside {@code [0, size())}
   * @throws IOException as {@link #write(ByteBuffer, long)}
   */
  @Override
  public void writeZeroes(long guestOffset, long bytes, boolean mayUnmap) throws IOException {
    Image.checkRange(guestOffset, bytes, virtualSize);
    linkedWriter().writeZeroes(guestOffset, bytes, mayUnmap);
  }

  /**
   * Makes {@code [guestOffset, guestOffset + bytes)} read as zeros and gives its whole clusters
   * back ({@link Qcow2Writer#punchHole}): they are discarded where a discarded cluster reads as
   * zeros (v3, or no backing file), the rest gets write-zeroes with unmap.
   *
   * @throws IllegalArgumentException if the range lies outside {@code [0, size())}
   * @throws IOException as {@link #write(ByteBuffer, long)}
   */
  @Override
  public void punchHole(long guestOffset, long bytes) throws IOException {
    Image.checkRange(guestOffset, bytes, virtualSize);
    linkedWriter().punchHole(guestOffset, bytes);
  }

  /**
   * Discards the whole clusters of {@code [guestOffset, guestOffset + bytes)} (QEMU {@code
   * qcow2_co_pdiscard}, {@link Qcow2Writer#discard}): their host clusters are freed and they read
   * as zeros (on a v2 image with a backing file: as the backing file). Parts of clusters are left
   * as they are.
   *
   * @throws IllegalArgumentException if the range lies outside {@code [0, size())}
   * @throws IOException as {@link #write(ByteBuffer, long)}
   */
  @Override
  public void discard(long guestOffset, long bytes) throws IOException {
    Image.checkRange(guestOffset, bytes, virtualSize);
    writer().discard(guestOffset, bytes);
  }

  /**
   * Allocates every guest cluster not allocated yet, as {@code qemu-img create -o preallocation=}
   * does: {@code metadata} (host clusters, reading as zeros, no space reserved), {@code falloc}
   * (space reserved with {@code fallocate}) or {@code full} (zeros written). Synced.
   *
   * @param mode "metadata", "falloc" or "full"
   * @throws IllegalArgumentException for another mode
   * @throws IOException as {@link #write(ByteBuffer, long)}
   */
  public void preallocate(String mode) throws IOException {
    if (!List.of("metadata", "falloc", "full").contains(mode)) {
      throw new IllegalArgumentException("preallocation=" + mode);
    }
    writer().preallocate(!mode.equals("metadata"), mode.equals("full")); // reserve, zeroes
  }

  /**
   * Makes every completed write durable, with the metadata written in an order that leaves the
   * image consistent at every instant ({@link Qcow2Writer#flush}).
   *
   * @throws IOException if the image is read-only or a write or sync fails
   */
  @Override
  public void flush() throws IOException {
    if (writer != null) {
      writer.flush();
    }
  }

  /**
   * The LUKS header of an image encrypted with LUKS, as read from the area the full disk encryption
   * extension names (what {@code qemu-img info} shows), else empty.
   *
   * @throws IOException if it cannot be read
   * @throws org.jqcowfs.image.ImageFormatException if it is one the opener would refuse
   */
  public Optional<LuksHeader> luksHeader() throws IOException {
    if (header.crypto() == null) {
      return Optional.empty();
    }
    ByteBuffer b = ByteBuffer.allocate(LuksHeader.BYTES);
    file.readFully(b, header.crypto().offset());
    try {
      return Optional.of(LuksHeader.decode(b.flip(), header.crypto().length()));
    } catch (IllegalArgumentException e) {
      throw new ImageFormatException(path, e.getMessage());
    }
  }

  /**
   * The changes to this image's format that {@code qemu-img} makes as its last act on an open image
   * (resize, backing file, snapshots, amend, bitmaps, encryption, commit's emptying).
   *
   * @throws IOException if the image is opened read-only
   */
  public Qcow2Editor editor() throws IOException {
    return new Qcow2Editor(this, reader.backing(), writer().formatChanges());
  }

  private Qcow2Writer writer() throws IOException {
    if (writer == null) {
      throw new IOException(path + ": opened read-only");
    }
    return writer;
  }

  /** The writer, for a write that may copy from the backing file: refused until one is linked. */
  private Qcow2Writer linkedWriter() throws IOException {
    if (reader.backing() == null && header.backingFileName() != null) {
      throw new IOException(path + ": has a backing file; written through its chain, not alone");
    }
    return writer();
  }

  @Override
  public Extent blockStatus(long guestOffset, long maxLength) throws IOException {
    Image.checkRange(guestOffset, 1, virtualSize);
    return blockStatus.at(guestOffset, Math.min(maxLength, virtualSize - guestOffset));
  }

  /**
   * Flushes a writable image and stores its persistent dirty bitmaps ({@link Qcow2Writer#close}),
   * then closes its files and lock.
   */
  @Override
  public void close() throws IOException {
    try {
      if (writer != null) {
        writer.close();
      }
    } finally {
      try {
        if (dataFile != file) {
          dataFile.close();
        }
      } finally {
        if (cipher != null) {
          cipher.destroy();
        }
        file.close();
        if (writeLock != null) {
          writeLock.close();
        }
      }
    }
  }
}
