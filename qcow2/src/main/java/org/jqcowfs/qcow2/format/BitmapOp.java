package org.jqcowfs.qcow2.format;

import java.io.IOException;
import java.util.Locale;

/**
 * One operation of {@code qemu-img bitmap} on a persistent dirty bitmap, as data (QEMU {@code
 * img_bitmap}: {@code --add}, {@code --remove}, {@code --clear}, {@code --enable}, {@code
 * --disable}, {@code --merge}).
 *
 * @param kind what is done
 * @param granularity for {@link Kind#ADD}: bytes of guest data per bit, a power of two from 512 to
 *     2^31; 0 for QEMU's default (the cluster size, within 4 KiB..64 KiB)
 * @param disabled for {@link Kind#ADD}: the new bitmap does not record writes
 * @param source for {@link Kind#MERGE}: the bitmap merged in
 * @param external for {@link Kind#MERGE}: the dirty ranges of {@code source} in another image, or
 *     null when it is in the same image
 */
public record BitmapOp(
    BitmapOp.Kind kind, long granularity, boolean disabled, String source, DirtySource external) {
  /** The operations. */
  public enum Kind {
    ADD,
    REMOVE,
    CLEAR,
    ENABLE,
    DISABLE,
    MERGE
  }

  /** The dirty ranges of a bitmap in another image ({@code Qcow2Image#dirtyExtents}). */
  public interface DirtySource {
    /** Gives {@code sink} every dirty range, in guest order. */
    void dirtyRanges(RangeSink sink) throws IOException;
  }

  /** Takes dirty ranges. */
  public interface RangeSink {
    /**
     * @param start guest offset, bytes
     * @param length bytes
     */
    void dirty(long start, long length);
  }

  /** {@code kind} without arguments (remove, clear, enable, disable). */
  public static BitmapOp of(Kind kind) {
    return new BitmapOp(kind, 0, false, null, null);
  }

  /** The operation's name in QEMU's messages ("add", "merge"). */
  public String verb() {
    return kind.name().toLowerCase(Locale.ROOT);
  }
}
