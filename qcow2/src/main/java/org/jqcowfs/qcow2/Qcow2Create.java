package org.jqcowfs.qcow2;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.file.FileAlreadyExistsException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.crypto.Luks;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.RefcountBlock;
import org.jqcowfs.qcow2.metadata.HeaderWriter;
import org.jqcowfs.storage.Storage;

/**
 * Creates an empty qcow2 image as {@code qemu-img create -f qcow2} lays it out (QEMU {@code
 * qcow2_co_create}): the header in cluster 0, a one-cluster refcount table in cluster 1, the
 * refcount block(s) after it, then the L1 table; every one of those clusters has refcount 1 and the
 * file ends with the L1 table. No cluster of the disk is allocated.
 */
public final class Qcow2Create {
  private Qcow2Create() {}

  /**
   * What to create, in qemu-img's option terms.
   *
   * @param virtualSize the disk's bytes (rounded up to 512 as QEMU does)
   * @param clusterBits log2 of the cluster size, 9..21 ({@code cluster_size})
   * @param version 2 ({@code compat=0.10}) or 3 ({@code compat=1.1})
   * @param extendedL2 {@code extended_l2}: subclusters (v3, clusters of 16 KiB or more)
   * @param zstd {@code compression_type=zstd} (v3), else deflate
   * @param lazyRefcounts {@code lazy_refcounts} (v3)
   * @param refcountOrder log2 of {@code refcount_bits}, 0..6 (v2: 4 only)
   * @param backingFile the backing file name, stored as given, or null
   * @param backingFormat the backing file's format (qcow2, raw), recorded in the header, or null
   * @param dataFile the external data file's name ({@code data_file}, v3), or null
   * @param dataFileRaw {@code data_file_raw}
   */
  public record Options(
      long virtualSize,
      int clusterBits,
      int version,
      boolean extendedL2,
      boolean zstd,
      boolean lazyRefcounts,
      int refcountOrder,
      String backingFile,
      String backingFormat,
      String dataFile,
      boolean dataFileRaw) {

    /** qemu-img's defaults: 64 KiB clusters, v3, 16-bit refcounts, deflate, no backing file. */
    public static Options defaults(long virtualSize) {
      return new Options(virtualSize, 16, 3, false, false, false, 4, null, null, null, false);
    }

    /**
     * Checks the combination as {@code qcow2_co_create} does.
     *
     * @throws IllegalArgumentException naming the option and the value QEMU refuses
     */
    public Options {
      if (clusterBits < 9 || clusterBits > 21) {
        throw new IllegalArgumentException(
            "cluster_size must be a power of two between 512 and 2M, not " + (1L << clusterBits));
      }
      if (version != 2 && version != 3) {
        throw new IllegalArgumentException("compat must be 0.10 or 1.1");
      }
      if (refcountOrder < 0 || refcountOrder > 6) {
        throw new IllegalArgumentException("refcount_bits must be a power of two up to 64");
      }
      if (version == 2) {
        if (refcountOrder != 4) {
          throw new IllegalArgumentException(
              "Different refcount widths than 16 bits require compatibility level 1.1 or above"
                  + " (use compat=1.1 or greater)");
        }
        if (lazyRefcounts) {
          throw new IllegalArgumentException(
              "Lazy refcounts only supported with compatibility level 1.1 and above (use"
                  + " compat=1.1 or greater)");
        }
        if (extendedL2) {
          throw new IllegalArgumentException(
              "Extended L2 entries are only supported with compatibility level 1.1 and above"
                  + " (use compat=1.1 or greater)");
        }
        if (zstd) {
          throw new IllegalArgumentException(
              "Compression type selection is only supported with compatibility level 1.1 and"
                  + " above (use compat=1.1 or greater)");
        }
        if (dataFile != null) {
          throw new IllegalArgumentException(
              "External data files are only supported with compatibility level 1.1 and above");
        }
      }
      if (extendedL2 && clusterBits < 14) {
        throw new IllegalArgumentException(
            "Extended L2 entries need a cluster size of 16k or more");
      }
      if (dataFileRaw) {
        throw new IllegalArgumentException("data_file_raw is not supported yet");
      }
      if (dataFileRaw && dataFile == null) {
        throw new IllegalArgumentException("data_file_raw requires data_file");
      }
      if (dataFileRaw && backingFile != null) {
        throw new IllegalArgumentException("Backing file and data_file_raw cannot be combined");
      }
      if (backingFormat != null && backingFile == null) {
        throw new IllegalArgumentException("Backing format cannot be used without backing file");
      }
      if (virtualSize < 0) {
        throw new IllegalArgumentException("Image size must be a non-negative number of bytes");
      }
    }
  }

  /**
   * Creates {@code path} (which must not exist) as {@code options} say; for an external data file,
   * creates or truncates that file to the disk's length (sparse), named relative to {@code path}'s
   * directory.
   *
   * @throws FileAlreadyExistsException if {@code path} exists
   * @throws IllegalArgumentException if the disk needs an L1 table over QEMU's 32 MiB
   * @throws IOException if a file cannot be written
   */
  public static void create(Path path, Options options) throws IOException {
    Geometry g = new Geometry(options.clusterBits(), options.extendedL2());
    long clusterSize = g.clusterSize();
    long size = (options.virtualSize() + 511) & ~511L;
    long l1Entries = g.l1EntriesFor(size);
    if (l1Entries * 8 > Header.MAX_L1_BYTES) {
      throw new IllegalArgumentException("Image size is too big for this cluster size");
    }
    long l1Bytes = l1Entries * 8;
    long l1Clusters = (l1Bytes + clusterSize - 1) / clusterSize;
    long refcountsPerBlock = clusterSize * 8 / (1L << options.refcountOrder());
    // header, refcount table, refcount blocks, L1 table: as many blocks as cover them all
    long blocks = 1;
    while ((2 + blocks + l1Clusters) > blocks * refcountsPerBlock) {
      blocks++;
    }
    if (blocks * 8 > clusterSize) {
      throw new IllegalArgumentException("Image size is too big for this cluster size");
    }
    long usedClusters = 2 + blocks + l1Clusters;
    long l1Offset = (2 + blocks) * clusterSize;

    long incompatible = 0;
    long compatible = 0;
    long autoclear = 0;
    if (options.version() == 3) {
      incompatible |= options.extendedL2() ? Header.INCOMPAT_EXTL2 : 0;
      incompatible |= options.zstd() ? Header.INCOMPAT_COMPRESSION : 0;
      incompatible |= options.dataFile() != null ? Header.INCOMPAT_DATA_FILE : 0;
      compatible |= options.lazyRefcounts() ? Header.COMPAT_LAZY_REFCOUNTS : 0;
      autoclear |= options.dataFileRaw() ? Header.AUTOCLEAR_DATA_FILE_RAW : 0;
    }
    Header h =
        new Header(
            options.version(),
            options.backingFile(),
            options.clusterBits(),
            size,
            0,
            (int) l1Entries,
            l1Entries > 0 ? l1Offset : 0,
            clusterSize,
            1,
            0,
            0,
            incompatible,
            compatible,
            autoclear,
            options.refcountOrder(),
            options.version() == 3 ? Header.V3_HEADER_BYTES + 8 : Header.V2_HEADER_BYTES,
            options.zstd() ? 1 : 0,
            options.backingFormat(),
            options.dataFile(),
            // qemu-img writes the table only with clusters over 4 KiB
            options.version() == 3 && clusterSize > 4096 ? Header.FEATURE_NAMES : Map.of(),
            null,
            null);

    Files.createFile(path);
    boolean done = false;
    try (Storage f = PosixStorage.open(path, HostFileOptions.DEFAULT.withWritable(true))) {
      HeaderWriter.write(f, h);
      ByteBuffer table = ByteBuffer.allocate((int) clusterSize);
      for (int i = 0; i < blocks; i++) {
        table.putLong(i * 8, (2 + i) * clusterSize);
      }
      f.write(table, clusterSize);
      for (int i = 0; i < blocks; i++) {
        ByteBuffer block = ByteBuffer.allocate((int) clusterSize);
        for (long c = i * refcountsPerBlock;
            c < Math.min(usedClusters, (i + 1) * refcountsPerBlock);
            c++) {
          RefcountBlock.put(block, 1 << options.refcountOrder(), c - i * refcountsPerBlock, 1);
        }
        f.write(block, (2 + i) * clusterSize);
      }
      if (l1Bytes > 0) {
        f.write(ByteBuffer.allocate((int) l1Bytes), l1Offset);
      }
      f.flush();
      done = true;
    } finally {
      if (!done) {
        Files.deleteIfExists(path);
      }
    }
    if (options.dataFile() != null) {
      Path data = path.toAbsolutePath().getParent().resolve(options.dataFile());
      try (RandomAccessFile raf = new RandomAccessFile(data.toFile(), "rw")) {
        raf.setLength(size); // sparse, the disk's length, as qemu-img makes it
      }
    }
  }

  /**
   * Makes the image just created at {@code path} encrypted with LUKS, key slot 0 opened by {@code
   * passphrase} ({@link Luks#create}, then {@link Qcow2Editor#setUpEncryption}; QEMU's {@code
   * qcow2_co_create} with {@code encrypt.format=luks}). Costs about the spec's iteration time.
   *
   * @throws IOException if the image cannot be opened writable or written, or is encrypted already
   */
  public static void encrypt(Path path, Luks.Spec spec, byte[] passphrase) throws IOException {
    Luks.Created luks = Luks.create(spec, passphrase);
    Qcow2Options writable =
        Qcow2Options.DEFAULT.withHostIo(HostFileOptions.DEFAULT.withWritable(true));
    try (Qcow2Image image = Qcow2Image.open(path, writable)) {
      image.editor().setUpEncryption(luks);
    }
  }
}
