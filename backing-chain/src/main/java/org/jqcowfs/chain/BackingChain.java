package org.jqcowfs.chain;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BooleanSupplier;
import org.jqcowfs.image.DamagedRangeException;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.Image;
import org.jqcowfs.io.Closeables;
import org.jqcowfs.qcow2.metadata.L2Cache;
import org.jqcowfs.storage.CachedView;
import org.jqcowfs.storage.Location;

/**
 * An image with its backing files, top (index 0) to bottom, seen as one virtual disk. Reads go to
 * the top layer, and ranges a layer does not allocate go to the layer below; a backing file shorter
 * than its overlay reads as zeros past its end. Block status is QEMU's chain-wide status
 * (qemu-img.c {@code get_block_status}, io.c {@code bdrv_co_block_status}). Thread-safe.
 */
public final class BackingChain implements Image {
  private final List<Image> layers;
  private final List<Image> views;
  private final List<Closeable> locks;

  BackingChain(List<Image> layers, List<Closeable> locks) {
    this.layers = List.copyOf(layers);
    this.locks = List.copyOf(locks);
    List<Image> v = new ArrayList<>();
    for (int i = 0; i < layers.size(); i++) {
      v.add(new LayerView(i));
    }
    this.views = List.copyOf(v);
    for (int i = 0; i + 1 < layers.size(); i++) {
      layers.get(i).setBacking(views.get(i + 1));
    }
  }

  /** The layers, top first. */
  public List<Image> layers() {
    return layers;
  }

  /** The top layer. */
  public Image top() {
    return layers.get(0);
  }

  /**
   * Layer {@code index} with the layers below it, as the layer above links it (its reads and block
   * status are the chain's from {@code index} down): {@code below(1)} is what the top reads
   * through.
   *
   * @throws IndexOutOfBoundsException unless {@code 0 <= index < layers().size()}
   */
  public Image below(int index) {
    return views.get(index);
  }

  @Override
  public Location location() {
    return top().location();
  }

  @Override
  public long size() {
    return top().size();
  }

  @Override
  public void read(ByteBuffer dst, long guestOffset) throws IOException {
    top().read(dst, guestOffset);
  }

  /** Whether the top layer was opened for writing; the layers below never are. */
  @Override
  public boolean writable() {
    return top().writable();
  }

  /** Writes into the top layer; its new clusters copy what the layers below hold. */
  @Override
  public void write(ByteBuffer src, long guestOffset) throws IOException {
    top().write(src, guestOffset);
  }

  @Override
  public void writeZeroes(long guestOffset, long bytes, boolean mayUnmap) throws IOException {
    top().writeZeroes(guestOffset, bytes, mayUnmap);
  }

  @Override
  public void punchHole(long guestOffset, long bytes) throws IOException {
    top().punchHole(guestOffset, bytes);
  }

  @Override
  public void discard(long guestOffset, long bytes) throws IOException {
    top().discard(guestOffset, bytes);
  }

  @Override
  public void flush() throws IOException {
    top().flush();
  }

  @Override
  public long hostBytes() throws IOException {
    long total = 0;
    for (Image layer : layers) {
      total += layer.hostBytes();
    }
    return total;
  }

  /**
   * A view of the range from the first layer that allocates it, when that layer stores all of it
   * raw and cached ({@link Image#cachedView}); null otherwise, also when the range is allocated in
   * part only, or reaches past the end of a shorter backing file (zeros there).
   */
  @Override
  public CachedView cachedView(long guestOffset, int length) throws IOException {
    Image.checkRange(guestOffset, length, size());
    for (int depth = 0; depth < layers.size(); depth++) {
      Image layer = layers.get(depth);
      if (guestOffset + length > layer.size()) {
        return null;
      }
      CachedView view = layer.cachedView(guestOffset, length);
      if (view != null || depth + 1 == layers.size()) {
        return view;
      }
      Extent e = layer.blockStatus(guestOffset, length);
      if (e.allocated() || e.length() < length) {
        return null;
      }
    }
    return null;
  }

  /**
   * Layer {@code index} with the layers below it: what the layer above links as its backing image
   * (its reads go through the links; its block status is the chain's from {@code index} down).
   */
  private final class LayerView implements Image {
    private final int index;

    LayerView(int index) {
      this.index = index;
    }

    @Override
    public long size() {
      return layers.get(index).size();
    }

    @Override
    public Location location() {
      return layers.get(index).location();
    }

    @Override
    public void read(ByteBuffer dst, long guestOffset) throws IOException {
      layers.get(index).read(dst, guestOffset); // through the layers below, linked at open
    }

    /** The status of what this view reads: the chain from its layer down. */
    @Override
    public Extent blockStatus(long guestOffset, long maxLength) throws IOException {
      return statusFrom(index, guestOffset, maxLength);
    }

    @Override
    public long hostBytes() throws IOException {
      return layers.get(index).hostBytes();
    }

    @Override
    public void close() {}
  }

  /**
   * The chain-wide status at {@code guestOffset}, as qemu-img map's {@code get_block_status}: the
   * first layer that allocates the range decides; where none does, the range reads as zeros and is
   * not present. A layer whose backing file ends before {@code guestOffset} decides zeros itself.
   *
   * @param guestOffset offset in bytes, {@code < size()}
   * @param maxLength most bytes to cover
   * @throws IOException from a layer's block status
   */
  public Extent chainStatus(long guestOffset, long maxLength) throws IOException {
    return statusFrom(0, guestOffset, maxLength);
  }

  /** {@link #chainStatus} of the chain from layer {@code top} down. */
  private Extent statusFrom(int top, long guestOffset, long maxLength) throws IOException {
    long size = layers.get(top).size();
    Image.checkRange(guestOffset, 1, size);
    long n = Math.min(maxLength, size - guestOffset);
    for (int depth = top; ; depth++) {
      Extent e = layers.get(depth).blockStatus(guestOffset, n);
      n = e.length();
      if (e.allocated()) {
        return e.atDepth(depth);
      }
      boolean bottom = depth + 1 == layers.size();
      if (bottom || guestOffset >= layers.get(depth + 1).size()) {
        return new Extent(
            guestOffset, n, false, false, true, false, e.hostOffset(), e.hostFile(), depth);
      }
      n = Math.min(n, layers.get(depth + 1).size() - guestOffset);
    }
  }

  /**
   * The merged chain-wide map of {@code [guestOffset, guestOffset + length)}: the objects of {@code
   * qemu-img map --output=json}.
   *
   * @throws IOException from block status, a damaged range ({@link DamagedRangeException}) too
   */
  public List<Extent> map(long guestOffset, long length) throws IOException {
    return map(
        guestOffset,
        length,
        d -> {
          throw d;
        });
  }

  /**
   * As {@link #map(long, long)}, but a damaged range is handed to {@code onDamage} and left out of
   * the map, and the walk goes on after it.
   *
   * @param onDamage told each damaged range, in guest order; it may throw to stop the walk
   * @throws IOException from block status (other than a damaged range), or from {@code onDamage}
   */
  public List<Extent> map(long guestOffset, long length, DamageHandler onDamage)
      throws IOException {
    Extent.Merger merger = new Extent.Merger();
    long end = guestOffset + length;
    for (long pos = guestOffset; pos < end; ) {
      Extent next;
      try {
        next = chainStatus(pos, end - pos);
      } catch (DamagedRangeException d) {
        onDamage.damaged(d);
        merger.cut();
        pos = skip(d, pos);
        continue;
      }
      merger.add(next);
      pos = next.end();
    }
    return merger.finish();
  }

  /** Told of a damaged range met by a walk over the disk. */
  @FunctionalInterface
  public interface DamageHandler {
    /**
     * @throws IOException to stop the walk
     */
    void damaged(DamagedRangeException d) throws IOException;
  }

  /**
   * Where a walk that met damage at {@code pos} goes on: the end of the damaged range. A range that
   * does not hold {@code pos} cannot be skipped safely, and is rethrown.
   */
  private long skip(DamagedRangeException d, long pos) throws DamagedRangeException {
    if (!d.covers(pos)) {
      throw d;
    }
    return Math.min(d.end(), size());
  }

  @Override
  public Extent blockStatus(long guestOffset, long maxLength) throws IOException {
    return chainStatus(guestOffset, maxLength);
  }

  /**
   * {@code lseek(SEEK_DATA)}: the first offset at or after {@code offset} where the chain holds
   * data that does not read as zero ({@link Extent#readsAsData}; QEMU's FUSE export, {@code
   * fuse_lseek}, also takes preallocated zeros for data). A damaged range counts as data that
   * cannot be read: a walk that reaches one stops there, and a search from inside one fails. The
   * walk is a scan: the L2 tables it reads are not cached ({@link L2Cache#scan}).
   *
   * @return the offset, or -1 for ENXIO (no data at or after {@code offset}, or {@code offset >=
   *     size()})
   * @throws DamagedRangeException if {@code offset} lies in a damaged range (EIO)
   */
  public long seekData(long offset) throws IOException {
    return L2Cache.scan(() -> findData(offset));
  }

  private long findData(long offset) throws IOException {
    for (long pos = offset; pos < size(); ) {
      Extent e;
      try {
        e = chainStatus(pos, Long.MAX_VALUE);
      } catch (DamagedRangeException d) {
        if (pos == offset) {
          throw d;
        }
        skip(d, pos);
        return pos;
      }
      if (e.readsAsData()) {
        return pos;
      }
      pos = e.end();
    }
    return -1;
  }

  /**
   * {@code lseek(SEEK_HOLE)}: the first offset at or after {@code offset} that reads as zero
   * ({@link Extent#readsAsData}: zero clusters, unallocated ranges, preallocated host holes), or
   * {@link #size()}. A damaged range counts as data (never as a hole, which a copy would skip as
   * zeros), and a search from inside one fails. The walk is a scan, as {@link #seekData}'s.
   *
   * @return the offset, or -1 for ENXIO ({@code offset > size()})
   * @throws DamagedRangeException if {@code offset} lies in a damaged range (EIO)
   */
  public long seekHole(long offset) throws IOException {
    return offset > size() ? -1 : L2Cache.scan(() -> findHole(offset));
  }

  private long findHole(long offset) throws IOException {
    for (long pos = offset; pos < size(); ) {
      Extent e;
      try {
        e = chainStatus(pos, Long.MAX_VALUE);
      } catch (DamagedRangeException d) {
        if (pos == offset) {
          throw d;
        }
        pos = skip(d, pos);
        continue;
      }
      if (!e.readsAsData()) {
        return pos;
      }
      pos = e.end();
    }
    return size();
  }

  /**
   * Bytes that read as data ({@link Extent#readsAsData}), for {@code st_blocks}. Damaged ranges are
   * not counted; each is handed to {@code onDamage}.
   *
   * @throws IOException from block status (other than a damaged range), or from {@code onDamage}
   */
  public long dataBytes(DamageHandler onDamage) throws IOException {
    return dataBytes(onDamage, () -> false);
  }

  /**
   * As {@link #dataBytes(DamageHandler)}, asking {@code cancelled} before each step. A scan: the L2
   * tables it reads are not cached ({@link L2Cache#scan}).
   *
   * @return the bytes, or -1 if {@code cancelled} said so first
   * @throws IOException as {@link #dataBytes(DamageHandler)}
   */
  public long dataBytes(DamageHandler onDamage, BooleanSupplier cancelled) throws IOException {
    return L2Cache.scan(() -> countDataBytes(onDamage, cancelled));
  }

  private long countDataBytes(DamageHandler onDamage, BooleanSupplier cancelled)
      throws IOException {
    long total = 0;
    for (long pos = 0; pos < size(); ) {
      if (cancelled.getAsBoolean()) {
        return -1;
      }
      Extent e;
      try {
        e = chainStatus(pos, Long.MAX_VALUE);
      } catch (DamagedRangeException d) {
        onDamage.damaged(d);
        pos = skip(d, pos);
        continue;
      }
      if (e.readsAsData()) {
        total += e.length();
      }
      pos = e.end();
    }
    return total;
  }

  @Override
  public void close() throws IOException {
    Closeables.closeAll(layers, locks);
  }
}
