package org.jqcowfs.qcow2.format;

import static org.jqcowfs.qcow2.format.SubclusterType.*;
import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** L2 entry classification against the spec's bit table (qcow2-spec.md 3.2, 3.3). */
class L2EntryTest {
  private static final Geometry STD = new Geometry(16, false);
  private static final Geometry EXT = new Geometry(16, true);
  private static final long HOST = 0x50000;

  private static SubclusterType std(long word) {
    return new L2Entry(word, 0).type(STD, 0, true, false);
  }

  @Test
  void standardEntries() {
    assertEquals(UNALLOCATED_PLAIN, std(0));
    assertEquals(NORMAL, std(HOST | L2Entry.QCOW_OFLAG_COPIED));
    assertEquals(NORMAL, std(HOST));
    assertEquals(ZERO_PLAIN, std(1));
    assertEquals(ZERO_ALLOC, std(HOST | 1));
    assertEquals(COMPRESSED, std(L2Entry.QCOW_OFLAG_COMPRESSED | 0x12345));
    assertEquals(INVALID, std(HOST | 2), "reserved bit 1");
    assertEquals(INVALID, std(HOST | 1L << 56), "reserved bit 56");
    assertEquals(INVALID, new L2Entry(HOST | 1, 0).type(STD, 0, false, false), "zero flag in v2");
  }

  @Test
  void externalDataFileOffsetZeroWithCopiedIsNormal() {
    assertEquals(NORMAL, new L2Entry(L2Entry.QCOW_OFLAG_COPIED, 0).type(STD, 0, true, true));
    assertEquals(UNALLOCATED_PLAIN, new L2Entry(0, 0).type(STD, 0, true, true));
    assertEquals(INVALID, new L2Entry(L2Entry.QCOW_OFLAG_COMPRESSED, 0).type(STD, 0, true, true));
  }

  @Test
  void subclusters() {
    long bitmap = 0b0110L | (0b1000L << 32); // sc 1,2 allocated; sc 3 zero; sc 0 and 4+ neither
    L2Entry e = new L2Entry(HOST, bitmap);
    assertEquals(UNALLOCATED_ALLOC, e.type(EXT, 0, true, false));
    assertEquals(NORMAL, e.type(EXT, 1, true, false));
    assertEquals(NORMAL, e.type(EXT, 2, true, false));
    assertEquals(ZERO_ALLOC, e.type(EXT, 3, true, false));
    assertEquals(UNALLOCATED_ALLOC, e.type(EXT, 4, true, false));
    assertEquals(2, e.sameTypeRun(EXT, 1, NORMAL));
    assertEquals(1, e.sameTypeRun(EXT, 3, ZERO_ALLOC));
    assertEquals(28, e.sameTypeRun(EXT, 4, UNALLOCATED_ALLOC));
    assertEquals(1, e.sameTypeRun(EXT, 0, UNALLOCATED_ALLOC));

    L2Entry noHost = new L2Entry(0, 0xffffffffL << 32);
    assertEquals(ZERO_PLAIN, noHost.type(EXT, 5, true, false));
    assertEquals(27, noHost.sameTypeRun(EXT, 5, ZERO_PLAIN));
    assertEquals(INVALID, new L2Entry(0, 1).type(EXT, 0, true, false), "alloc bit without host");
    assertEquals(INVALID, new L2Entry(HOST, 1L | 1L << 32).type(EXT, 5, true, false), "alloc+zero");
    assertEquals(
        INVALID, new L2Entry(HOST | 1, 0).type(EXT, 0, true, false), "zero flag with ext L2");
    assertEquals(
        INVALID, new L2Entry(L2Entry.QCOW_OFLAG_COMPRESSED | HOST, 1).type(EXT, 0, true, false));
  }

  @Test
  void compressedDescriptorArithmetic() {
    // cluster_bits 16: offset in bits 0-53, additional sectors in bits 54-61.
    long word = L2Entry.QCOW_OFLAG_COMPRESSED | (3L << 54) | 0x12345;
    L2Entry.CompressedDescriptor d = new L2Entry(word, 0).compressedDescriptor(16);
    assertEquals(0x12345, d.hostOffset());
    assertEquals(4 * 512 - (0x12345 & 511), d.maxLength());
    // cluster_bits 21: offset bits 0-48, 13 bits of sectors.
    long w21 = L2Entry.QCOW_OFLAG_COMPRESSED | (8191L << 49) | 0x200;
    L2Entry.CompressedDescriptor d21 = new L2Entry(w21, 0).compressedDescriptor(21);
    assertEquals(0x200, d21.hostOffset());
    assertEquals(8192L * 512, d21.maxLength());
  }

  @Test
  void geometry() {
    assertEquals(8192, STD.l2Entries());
    assertEquals(4096, EXT.l2Entries());
    assertEquals(512L << 20, STD.bytesPerL2Table());
    assertEquals(3, STD.l1Index(3L * (512 << 20) + 5));
    assertEquals(2, EXT.subclusterIndex(2 * 2048 + 7));
    assertEquals(1, STD.l1EntriesFor(1));
    assertEquals(2, STD.l1EntriesFor((512L << 20) + 1));
  }
}
