package org.jqcowfs.qcow2.format;

/**
 * One internal snapshot table entry (spec section 5).
 *
 * @param id the unique ID string
 * @param name the name
 * @param l1TableOffset host offset of the snapshot's L1 table
 * @param l1Size entries of the snapshot's L1 table
 * @param virtualSize the snapshot's virtual disk size in bytes (extra data bytes 48-55, else the
 *     image's size)
 * @param dateSeconds creation time, seconds since the epoch
 * @param dateNanos creation time, nanoseconds part
 * @param vmClockNanos guest run time in nanoseconds
 * @param vmStateBytes VM state bytes
 * @param icount instructions executed by the guest (extra data bytes 16-23), or -1 when not stored
 */
public record Snapshot(
    String id,
    String name,
    long l1TableOffset,
    int l1Size,
    long virtualSize,
    long dateSeconds,
    long dateNanos,
    long vmClockNanos,
    long vmStateBytes,
    long icount) {

  /** QEMU {@code QCOW_MAX_SNAPSHOT_EXTRA_DATA}. */
  public static final int MAX_EXTRA_DATA = 1024;

  /** QEMU {@code QCOW_MAX_SNAPSHOTS_SIZE}: 64 MiB for the whole table. */
  public static final long MAX_TABLE_BYTES = 64L << 20;
}
