package org.jqcowfs.qcow2.format;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/**
 * The bitmap directory of a qcow2 image (spec: "Bitmap directory"), decoded and checked as QEMU's
 * {@code bitmap_list_load} and {@code check_dir_entry} do ({@code block/qcow2-bitmap.c}), and the
 * rules of its bitmap tables ({@code check_table_entry}). Pure: no I/O.
 */
public final class BitmapDirectory {
  /** Flag bit 0: the bitmap is being written, its data is not consistent. */
  public static final int FLAG_IN_USE = 1;

  /** Flag bit 1: the bitmap is enabled: writes set its bits. */
  public static final int FLAG_AUTO = 1 << 1;

  private static final int RESERVED_FLAGS = 0xfffffffc;
  private static final int ENTRY_HEADER_BYTES = 24;
  private static final int TYPE_DIRTY_TRACKING = 1;
  private static final int MIN_GRANULARITY_BITS = 9;
  private static final int MAX_GRANULARITY_BITS = 31;
  private static final int MAX_NAME_BYTES = 1023;
  private static final long MAX_TABLE_ENTRIES = 0x8000000L;

  /** QEMU's BME_MAX_PHYS_SIZE: the bitmap data clusters of one bitmap, at most 512 MiB. */
  private static final long MAX_PHYS_BYTES = 0x20000000L;

  private static final long TABLE_RESERVED_MASK = 0xff000000000001feL;
  private static final long TABLE_OFFSET_MASK = 0x00fffffffffffe00L;
  private static final long TABLE_ALL_ONES = 1L;

  private BitmapDirectory() {}

  /**
   * One bitmap of the directory.
   *
   * @param name the bitmap's name (UTF-8, 1..1023 bytes)
   * @param tableOffset host offset of its bitmap table, cluster aligned
   * @param tableEntries entries (8 bytes each) of its bitmap table
   * @param flags {@link #FLAG_IN_USE}, {@link #FLAG_AUTO}
   * @param granularityBits log2 of the bytes of guest data one bit covers, 9..31
   */
  public record Bitmap(
      String name, long tableOffset, int tableEntries, int flags, int granularityBits) {
    /** Bytes of guest data one bit covers. */
    public long granularity() {
      return 1L << granularityBits;
    }

    public boolean inUse() {
      return (flags & FLAG_IN_USE) != 0;
    }

    public boolean auto() {
      return (flags & FLAG_AUTO) != 0;
    }

    /** Bytes of the bitmap table. */
    public long tableBytes() {
      return tableEntries * 8L;
    }
  }

  /** A directory that QEMU would refuse to load; the message is QEMU's. */
  public static final class InvalidException extends Exception {
    InvalidException(String message) {
      super(message);
    }
  }

  /**
   * Decodes the directory {@code dir} (all of its bytes, {@code bitmap_directory_size}) of an image
   * whose header says {@code count} bitmaps.
   *
   * @param clusterBytes the image's cluster size
   * @param virtualBytes the disk's size: a bitmap not in use must cover it
   * @throws InvalidException for an entry past the directory's end, more or fewer entries than
   *     {@code count}, extra data, or an entry outside the constraints (table size or offset,
   *     granularity, flags, name size, type), with QEMU's message
   */
  public static List<Bitmap> decode(ByteBuffer dir, int count, int clusterBytes, long virtualBytes)
      throws InvalidException {
    List<Bitmap> out = new ArrayList<>();
    int pos = 0;
    int end = dir.limit();
    while (pos < end) {
      if (pos + ENTRY_HEADER_BYTES > end) {
        throw new InvalidException("Broken bitmap directory");
      }
      if (out.size() + 1 > count) {
        throw new InvalidException("More bitmaps found than specified in header extension");
      }
      long tableOffset = dir.getLong(pos);
      long tableEntries = dir.getInt(pos + 8) & 0xffffffffL;
      int flags = dir.getInt(pos + 12);
      int type = dir.get(pos + 16) & 0xff;
      int granularityBits = dir.get(pos + 17) & 0xff;
      int nameBytes = dir.getShort(pos + 18) & 0xffff;
      long extraBytes = dir.getInt(pos + 20) & 0xffffffffL;
      long entryBytes = (ENTRY_HEADER_BYTES + nameBytes + extraBytes + 7) & ~7L;
      if (pos + entryBytes > end) {
        throw new InvalidException("Broken bitmap directory");
      }
      if (extraBytes != 0) {
        throw new InvalidException("Bitmap extra data is not supported");
      }
      byte[] raw = new byte[nameBytes];
      dir.get(pos + ENTRY_HEADER_BYTES, raw);
      String name = new String(raw, StandardCharsets.UTF_8);
      long physBytes = tableEntries * clusterBytes;
      boolean fail =
          tableEntries == 0
              || tableOffset == 0
              || (tableOffset & (clusterBytes - 1)) != 0
              || tableEntries > MAX_TABLE_ENTRIES
              || granularityBits > MAX_GRANULARITY_BITS
              || granularityBits < MIN_GRANULARITY_BITS
              || (flags & RESERVED_FLAGS) != 0
              || nameBytes > MAX_NAME_BYTES
              || type != TYPE_DIRTY_TRACKING
              || physBytes > MAX_PHYS_BYTES
              || ((flags & FLAG_IN_USE) == 0 && virtualBytes > (physBytes * 8) << granularityBits);
      if (fail) {
        throw new InvalidException(
            "Bitmap '" + printable(name) + "' doesn't satisfy the constraints");
      }
      out.add(new Bitmap(name, tableOffset, (int) tableEntries, flags, granularityBits));
      pos += (int) entryBytes;
    }
    if (out.size() != count) {
      throw new InvalidException("Less bitmaps found than specified in header extension");
    }
    return out;
  }

  /**
   * Sets the flags of entry {@code index} of a directory that {@link #decode} accepted, in place:
   * the only field QEMU's {@code update_ext_header_and_dir_in_place} changes.
   *
   * @throws IndexOutOfBoundsException if the directory has no entry {@code index}
   */
  public static void setFlags(ByteBuffer dir, int index, int flags) {
    int pos = 0;
    for (int i = 0; i < index; i++) {
      int nameBytes = dir.getShort(pos + 18) & 0xffff;
      pos += (ENTRY_HEADER_BYTES + nameBytes + 7) & ~7; // extra data is refused by decode
    }
    dir.putInt(pos + 12, flags);
  }

  /** Whether a bitmap table entry is valid: QEMU {@code check_table_entry}. */
  public static boolean validTableEntry(long entry, int clusterBytes) {
    if ((entry & TABLE_RESERVED_MASK) != 0) {
      return false;
    }
    long offset = entry & TABLE_OFFSET_MASK;
    return offset == 0 || ((entry & TABLE_ALL_ONES) == 0 && (offset & (clusterBytes - 1)) == 0);
  }

  /** The host offset of the bitmap data cluster a table entry names, 0 for none. */
  public static long dataOffset(long entry) {
    return entry & TABLE_OFFSET_MASK;
  }

  /** Whether an entry without a data cluster stands for all ones (else all zeros). */
  public static boolean allOnes(long entry) {
    return (entry & TABLE_ALL_ONES) != 0;
  }

  /** A name as messages show it: control characters as '?'. */
  private static String printable(String name) {
    return name.replaceAll("\\p{Cntrl}", "?");
  }
}
