package org.jqcowfs.qcow2.metadata;

import static org.jqcowfs.image.ImageFormatException.hex;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;

/** Reads the internal snapshot table (spec section 5) into {@link Snapshot} entries. */
public final class SnapshotTable {
  private SnapshotTable() {}

  /**
   * Reads the snapshot table (QEMU {@code qcow2_read_snapshots}), checking every length against
   * QEMU's caps and the file.
   *
   * @throws ImageFormatException naming the snapshot index and field on a bad entry
   */
  public static List<Snapshot> read(Storage file, Header h) throws IOException {
    return readTable(file, h).snapshots();
  }

  /**
   * The table's entries and its bytes in the file (QEMU {@code s->snapshots_size}: each entry's
   * fixed part, extra data, id and name, padded to 8).
   */
  public record Table(List<Snapshot> snapshots, long bytes, List<String> corruptions) {}

  /** As {@link #read}, with the table's bytes. */
  public static Table readTable(Storage file, Header h) throws IOException {
    return readTable(file, h, false);
  }

  /**
   * As {@link #readTable(Storage, Header)}; {@code forCheck} lets through what a check reports
   * itself, as QEMU's {@code calculate_refcounts} does: an L1 table too large, unaligned, or past
   * the end of the file.
   */
  public static Table readTable(Storage file, Header h, boolean forCheck) throws IOException {
    Location p = file.location();
    List<Snapshot> out = new ArrayList<>();
    List<String> corruptions = new ArrayList<>(); // what a check reports (forCheck)
    long pos = h.snapshotsOffset();
    long fileLength = file.length();
    long total = 0;
    for (int i = 0; i < h.nbSnapshots(); i++) {
      ByteBuffer fixed = ByteBuffer.allocate(40);
      readAt(file, fixed, pos, i, "entry", fileLength, forCheck);
      long l1Offset = fixed.getLong(0);
      long l1Size = Integer.toUnsignedLong(fixed.getInt(8));
      int idLen = fixed.getShort(12) & 0xffff;
      int nameLen = fixed.getShort(14) & 0xffff;
      long dateSec = Integer.toUnsignedLong(fixed.getInt(16));
      long dateNsec = Integer.toUnsignedLong(fixed.getInt(20));
      long vmClock = fixed.getLong(24);
      long vmState = Integer.toUnsignedLong(fixed.getInt(32));
      long extraLen = Integer.toUnsignedLong(fixed.getInt(36));
      if (extraLen > Snapshot.MAX_EXTRA_DATA) {
        throw new ImageFormatException(
            p,
            "snapshot " + i + ": extra_data_size " + extraLen + " over " + Snapshot.MAX_EXTRA_DATA);
      }
      long virtualSize = h.size();
      long icount = -1;
      if (extraLen > 0) {
        ByteBuffer extra = ByteBuffer.allocate((int) extraLen);
        readAt(file, extra, pos + 40, i, "extra data", fileLength, forCheck);
        if (extraLen >= 8) {
          vmState = extra.getLong(0);
        }
        if (extraLen >= 16) {
          virtualSize = extra.getLong(8);
        }
        if (extraLen >= 24) {
          icount = extra.getLong(16);
        }
      } else if (h.version() >= 3 && forCheck) {
        corruptions.add(
            "ERROR snapshot table entry " + i + " is incomplete"); // qcow2_read_snapshots
      } else if (h.version() >= 3) {
        throw new ImageFormatException(
            p, "snapshot " + i + ": extra_data_size 0 in a v3 image (must be >= 16)");
      }
      byte[] idName = new byte[idLen + nameLen];
      readAt(
          file,
          ByteBuffer.wrap(idName),
          pos + 40 + extraLen,
          i,
          "id and name",
          fileLength,
          forCheck);
      String id = new String(idName, 0, idLen, StandardCharsets.UTF_8);
      String name = new String(idName, idLen, nameLen, StandardCharsets.UTF_8);
      long entryBytes = (40 + extraLen + idLen + nameLen + 7) & ~7L;
      total += entryBytes;
      if (total > Snapshot.MAX_TABLE_BYTES) {
        throw new ImageFormatException(
            p, "snapshot table over " + Snapshot.MAX_TABLE_BYTES + " bytes");
      }
      if (l1Size * 8 > Header.MAX_L1_BYTES && !forCheck) {
        throw new ImageFormatException(
            p, "snapshot " + i + " (" + id + "): l1_size " + l1Size + " too large");
      }
      if (virtualSize < 0) {
        throw new ImageFormatException(
            p, "snapshot " + i + " (" + id + "): disk size " + virtualSize + " invalid");
      }
      if (h.geometry().l1EntriesFor(virtualSize) > l1Size && !forCheck) {
        throw new ImageFormatException(
            p,
            "snapshot " + i + " (" + id + "): l1_size " + l1Size + " too small for " + virtualSize);
      }
      if (!forCheck) {
        Header.checkTable(
            p,
            "snapshot " + i + " (" + id + ") L1 table offset",
            l1Offset,
            l1Size * 8,
            h.clusterSize(),
            fileLength);
      }
      out.add(
          new Snapshot(
              id,
              name,
              l1Offset,
              (int) l1Size,
              virtualSize,
              dateSec,
              dateNsec,
              vmClock,
              vmState,
              icount));
      pos += entryBytes;
    }
    return new Table(List.copyOf(out), total, List.copyOf(corruptions));
  }

  private static void readAt(
      Storage file,
      ByteBuffer dst,
      long pos,
      int index,
      String what,
      long fileLength,
      boolean zerosPastEnd)
      throws IOException {
    if (zerosPastEnd && (pos > fileLength || dst.remaining() > fileLength - pos)) {
      int inFile = (int) Math.max(0, Math.min(dst.remaining(), fileLength - pos));
      if (inFile > 0) {
        file.readFully(dst.slice(0, inFile), pos); // the rest stays zeros, as QEMU reads it
      }
      dst.position(dst.limit()).flip();
      return;
    }
    if (pos > fileLength || dst.remaining() > fileLength - pos) {
      throw new ImageFormatException(
          file.location(),
          "snapshot " + index + ": " + what + " at " + hex(pos) + " runs past the end of the file");
    }
    file.readFully(dst, pos);
    dst.flip();
  }
}
