package org.jqcowfs.qcow2;

import java.io.IOException;
import org.jqcowfs.qcow2.format.L1Entry;
import org.jqcowfs.qcow2.format.L2Entry;
import org.jqcowfs.qcow2.metadata.Refcounts;

/**
 * The last step of a {@link RefcountCheck} walk (QEMU {@code check_oflag_copied}, without its
 * fixes): every L2 table and data cluster of the active L1 table has COPIED set exactly where its
 * stored refcount is 1.
 */
final class CopiedFlagCheck {
  private final RefcountCheck check;
  private final Refcounts stored;

  /** COPIED flags that disagree with the refcount (each a corruption). */
  long errors;

  /** L2 tables that could not be read. */
  long checkErrors;

  CopiedFlagCheck(RefcountCheck check, Refcounts stored) {
    this.check = check;
    this.stored = stored;
  }

  /** QEMU {@code check_oflag_copied}, without repairs: COPIED is set exactly at refcount 1. */
  void run() throws IOException {
    long[] l1 = check.readTable(check.header.l1TableOffset(), check.header.l1Size(), null);
    if (l1 == null) {
      return;
    }
    int entries = check.geometry.l2Entries();
    for (int i = 0; i < l1.length; i++) {
      L1Entry l1e = new L1Entry(l1[i]);
      long l2Offset = l1e.l2Offset();
      if (l2Offset == 0) {
        continue;
      }
      long refcount;
      try {
        refcount = stored.refcount(l2Offset >>> check.geometry.clusterBits());
      } catch (IOException e) {
        continue; // as QEMU: no message, no count
      }
      if ((refcount == 1) != l1e.isCopied()) {
        check.report(
            "ERROR OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%x refcount=%d",
            i, l1[i], refcount);
        errors++;
      }
      int words = check.geometry.extendedL2() ? 2 * entries : entries;
      long[] table = check.readTable(l2Offset, words, null);
      if (table == null) {
        check.report("ERROR: Could not read L2 table: %s", "Input/output error");
        checkErrors++;
        continue;
      }
      for (int j = 0; j < entries; j++) {
        long word = check.geometry.extendedL2() ? table[2 * j] : table[j];
        if ((word & L2Entry.QCOW_OFLAG_COMPRESSED) != 0) {
          continue;
        }
        long offset = word & L2Entry.L2E_OFFSET_MASK;
        boolean allocatedEntry =
            offset != 0 || (check.dataFile && (word & L2Entry.QCOW_OFLAG_COPIED) != 0);
        if (!allocatedEntry) {
          continue;
        }
        long count;
        if (check.dataFile) {
          count = 1;
        } else {
          try {
            count = stored.refcount(offset >>> check.geometry.clusterBits());
          } catch (IOException e) {
            continue;
          }
        }
        if ((count == 1) != ((word & L2Entry.QCOW_OFLAG_COPIED) != 0)) {
          check.report("ERROR OFLAG_COPIED data cluster: l2_entry=%x refcount=%d", word, count);
          errors++;
        }
      }
    }
  }
}
