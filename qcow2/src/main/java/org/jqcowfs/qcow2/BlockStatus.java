package org.jqcowfs.qcow2;

import java.io.IOException;
import org.jqcowfs.image.Extent;
import org.jqcowfs.qcow2.format.Geometry;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.metadata.ClusterMapper;
import org.jqcowfs.qcow2.metadata.Mapping;
import org.jqcowfs.qcow2.metadata.Refcounts;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/**
 * The block status of one qcow2 layer from its {@link Mapping}s, as QEMU's {@code
 * qcow2_co_block_status} reports it; in a metadata-preallocated image the host file's holes are
 * asked too ({@code qcow2_detect_metadata_preallocation}).
 */
final class BlockStatus {
  private final Storage file;
  private final Storage dataFile;
  private final Header header;
  private final Geometry geometry;
  private final ClusterMapper mapper;
  private final Storage.Holes holes;
  private volatile Boolean metadataPreallocation;
  private final boolean encrypted;

  /**
   * @param encrypted the data clusters are encrypted: no host offset is reported (QEMU sets {@code
   *     BDRV_BLOCK_OFFSET_VALID} only without {@code s->crypto})
   */
  BlockStatus(
      Storage file, Storage dataFile, Header header, ClusterMapper mapper, boolean encrypted) {
    this.encrypted = encrypted;
    this.file = file;
    this.dataFile = dataFile;
    this.header = header;
    this.geometry = header.geometry();
    this.mapper = mapper;
    this.holes = dataFile.capability(Storage.Holes.class);
  }

  /**
   * The block status at {@code guestOffset} (QEMU {@code qcow2_co_block_status}): one extent of at
   * most {@code maxLength} bytes, {@code guestOffset + maxLength <= } the disk's bytes.
   *
   * @throws IOException as {@link ClusterMapper#map}
   */
  Extent at(long guestOffset, long maxLength) throws IOException {
    Mapping r = mapper.map(guestOffset, maxLength);
    long len = r.length();
    Location dataPath = dataFile.location();
    if (encrypted) {
      return switch (r.type()) {
        case NORMAL -> new Extent(guestOffset, len, true, true, false, false, -1, null);
        case COMPRESSED -> new Extent(guestOffset, len, true, true, false, true, -1, null);
        case ZERO_PLAIN, ZERO_ALLOC ->
            new Extent(guestOffset, len, true, false, true, false, -1, null);
        case UNALLOCATED_PLAIN, UNALLOCATED_ALLOC -> Extent.unallocated(guestOffset, len);
        case INVALID -> throw new IllegalStateException("map never returns INVALID");
      };
    }
    return switch (r.type()) {
      case NORMAL ->
          metadataPreallocation()
              ? hostFileStatus(guestOffset, len, r.hostOffset())
              : new Extent(guestOffset, len, true, true, false, false, r.hostOffset(), dataPath);
      case COMPRESSED -> new Extent(guestOffset, len, true, true, false, true, -1, null);
      case ZERO_PLAIN -> new Extent(guestOffset, len, true, false, true, false, -1, null);
      case ZERO_ALLOC ->
          new Extent(guestOffset, len, true, false, true, false, r.hostOffset(), dataPath);
      case UNALLOCATED_PLAIN -> Extent.unallocated(guestOffset, len);
      case UNALLOCATED_ALLOC ->
          new Extent(guestOffset, len, false, false, false, false, r.hostOffset(), dataPath);
      case INVALID -> throw new IllegalStateException("map never returns INVALID");
    };
  }

  /**
   * Block status of a data run in a metadata-preallocated image: QEMU asks the host file ({@code
   * BDRV_BLOCK_RECURSE} in {@code bdrv_co_block_status}), so host holes read as zero data.
   */
  private Extent hostFileStatus(long guestOffset, long len, long host) throws IOException {
    Location dataPath = dataFile.location();
    long data = holes.seekData(host);
    if (data < 0) {
      return new Extent(guestOffset, len, true, true, true, false, host, dataPath);
    }
    if (data == host) {
      long hole = holes.seekHole(host);
      long n = hole < 0 ? len : Math.min(len, hole - host);
      return new Extent(guestOffset, n, true, true, false, false, host, dataPath);
    }
    return new Extent(
        guestOffset, Math.min(len, data - host), true, true, true, false, host, dataPath);
  }

  /** QEMU {@code qcow2_detect_metadata_preallocation}, computed once. */
  private boolean metadataPreallocation() {
    Boolean known = metadataPreallocation;
    if (known != null) {
      return known;
    }
    boolean result;
    Storage.Allocation allocation = file.capability(Storage.Allocation.class);
    if (holes == null || allocation == null) {
      metadataPreallocation = false; // a storage that cannot tell its holes: nothing to ask
      return false;
    }
    try {
      long fileLength = file.length();
      long realClusters = allocation.allocatedBytes() / geometry.clusterSize();
      long threshold = Math.max(realClusters * 10 / 9, realClusters + 2);
      long endCluster = (fileLength + geometry.clusterSize() - 1) >>> geometry.clusterBits();
      Refcounts refcounts = new Refcounts(file, header);
      long count = 0;
      for (long i = 0; i < endCluster && count < threshold; i++) {
        count += refcounts.refcount(i) != 0 ? 1 : 0;
      }
      result = count >= threshold;
    } catch (IOException e) {
      result = false; // as QEMU: an error means "not preallocated"
    }
    metadataPreallocation = result;
    return result;
  }
}
