package org.jqcowfs.convert;

import java.io.IOException;
import java.util.function.LongConsumer;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.image.DamagedRangeException;
import org.jqcowfs.image.Extent;

/**
 * Hands out the chunks to convert, in guest order: data ranges by block status, neighbouring
 * extents (a compressed image has one per cluster) joined into chunks that end at {@code
 * chunkBytes}-aligned guest offsets or where the data ends. Ranges that are not data are skipped.
 * With an alignment over 1 (a qcow2 target's cluster), chunks start and end on it and a unit that
 * is only partly data is data (as qemu-img convert decides whole clusters for {@code -c}). For a
 * backed target only the top layer's status counts, and where it decides zeros a zero chunk is
 * handed out. Thread-safe: one worker at a time plans (block status comes from cached L2 tables).
 */
final class ChunkPlanner {
  /**
   * A guest range to convert: {@code length} bytes, at most {@link #chunkBytes} of data; {@code
   * compressed} when some of it is stored in compressed clusters; {@code zero} when it is to be
   * written as zeros rather than read.
   */
  record Chunk(long start, long length, boolean compressed, boolean zero) {}

  /** What the source holds in a range, for the target. */
  private enum Kind {
    DATA,
    ZERO,
    SKIP
  }

  final int chunkBytes;
  private final BackingChain chain;
  private final long size;
  private final LongConsumer skipped;
  private final BackingChain.DamageHandler salvage;
  private final long align;
  private final boolean topOnly;
  private final long targetBacking;
  private long pos;
  private long extentEnd;
  private Kind extentKind;
  private boolean extentCompressed;

  ChunkPlanner(BackingChain chain, LongConsumer skipped, BackingChain.DamageHandler salvage) {
    this(chain, skipped, salvage, 1, -1);
  }

  /**
   * @param skipped told the bytes of each skipped range (no data there, or damaged)
   * @param salvage told each damaged range, which is then skipped (left as zeros); null: a damaged
   *     range fails {@link #next}
   * @param align guest bytes chunks start and end on (a power of two; the disk's end excepted)
   * @param targetBacking the virtual bytes of the target's backing file, or -1 without one; with
   *     one, plan what the source's top layer holds (data, and zeros before this offset) and skip
   *     what it leaves to its backing file (qemu-img convert {@code -B}); else the whole chain's
   *     data
   */
  ChunkPlanner(
      BackingChain chain,
      LongConsumer skipped,
      BackingChain.DamageHandler salvage,
      int align,
      long targetBacking) {
    this.chain = chain;
    this.size = chain.size();
    this.skipped = skipped;
    this.salvage = salvage;
    this.align = align;
    this.topOnly = targetBacking >= 0;
    this.targetBacking = targetBacking;
    this.chunkBytes = Math.max(Converter.CHUNK, align);
  }

  /**
   * The next chunk, or null when the whole disk is planned.
   *
   * @throws IOException if block status fails
   */
  synchronized Chunk next() throws IOException {
    long start = -1;
    boolean compressed = false;
    while (pos < size) {
      if (pos >= extentEnd) {
        Extent e;
        try {
          e = status(pos);
        } catch (DamagedRangeException d) {
          if (salvage == null || !d.covers(pos)) {
            throw d;
          }
          if (start >= 0) {
            break; // the chunk ends here; the next call reports the damage and skips it
          }
          salvage.damaged(d);
          long end = Math.min(roundUp(d.end()), size);
          skipped.accept(end - pos);
          pos = end;
          continue;
        }
        extentEnd = e.end();
        extentKind = kind(e);
        extentCompressed = e.compressed();
      }
      Kind k = extentKind;
      long end = extentEnd;
      if (k != Kind.DATA && align > 1) {
        long whole = end == size ? size : end & -align;
        if (whole > pos) {
          end = whole;
        } else {
          k = Kind.DATA; // a unit only partly skipped or zero: read and decided as a whole
        }
      }
      if (k != Kind.DATA) {
        if (start >= 0) {
          break; // the chunk ends where the data does; the next call takes the rest
        }
        long at = pos;
        pos = end;
        if (k == Kind.ZERO && topOnly) {
          return new Chunk(at, end - at, false, true);
        }
        skipped.accept(end - at);
        continue;
      }
      end = Math.min(roundUp(end), size);
      if (start < 0) {
        start = pos;
      }
      compressed |= extentCompressed;
      long limit = (start / chunkBytes + 1) * chunkBytes;
      pos = Math.min(end, limit);
      if (pos == limit) {
        break;
      }
    }
    return start < 0 ? null : new Chunk(start, pos - start, compressed, false);
  }

  /**
   * The status at {@code at}: the chain's, or with {@link #topOnly} the top layer's (QEMU's {@code
   * bdrv_block_status} of the source: zeros where the top has no backing data there).
   */
  private Extent status(long at) throws IOException {
    if (!topOnly) {
      return chain.chainStatus(at, size - at);
    }
    // cut where the target's backing file ends: zeros before it are written, after it not
    long n = at < targetBacking ? Math.min(size, targetBacking) - at : size - at;
    if (chain.layers().size() == 1) {
      return chain.chainStatus(at, n);
    }
    Extent e = chain.top().blockStatus(at, n);
    long backingSize = chain.layers().get(1).size();
    if (!e.allocated() && at >= backingSize) {
      return new Extent(at, e.length(), false, false, true, false, -1, null);
    }
    if (!e.allocated() && e.end() > backingSize) {
      return e.withLength(backingSize - at);
    }
    return e;
  }

  private Kind kind(Extent e) {
    if (!topOnly) {
      return e.readsAsData() ? Kind.DATA : Kind.SKIP;
    }
    if (e.zero()) {
      return e.start() < targetBacking ? Kind.ZERO : Kind.SKIP; // qemu-img's post_backing_zero
    }
    return e.data() ? Kind.DATA : Kind.SKIP;
  }

  private long roundUp(long offset) {
    return (offset + align - 1) & -align;
  }
}
