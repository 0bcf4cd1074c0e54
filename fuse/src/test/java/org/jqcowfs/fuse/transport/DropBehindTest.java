package org.jqcowfs.fuse.transport;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;

/**
 * {@link DropBehind}: which byte ranges a reader's READs drop from the page cache. The expected
 * ranges follow from the contract (drop what a dense forward run has passed by the lag, in steps),
 * not from the class's output.
 */
class DropBehindTest {
  static final long MIB = 1L << 20;

  /** The drops asked for, as [offset, end) pairs. */
  private final List<long[]> drops = new ArrayList<>();

  private final DropBehind dropBehind =
      new DropBehind((offset, length) -> drops.add(new long[] {offset, offset + length}));

  private long dropped() {
    return drops.stream().mapToLong(d -> d[1] - d[0]).sum();
  }

  /**
   * Drops are contiguous from {@code from}, in order, each at least a step, and end at {@code to}.
   */
  private void assertDropsCover(long from, long to) {
    long at = from;
    for (long[] d : drops) {
      assertEquals(at, d[0], "drops must follow each other");
      assertTrue(d[1] - d[0] >= DropBehind.STEP_BYTES, "a drop smaller than a step");
      at = d[1];
    }
    assertEquals(to, at, "end of the dropped range");
  }

  @Test
  void aSequentialReaderDropsWhatItPassedByTheLag() {
    long front = 0;
    for (int i = 0; i < 200; i++) { // 200 MiB in 1 MiB READs
      dropBehind.read(front, MIB);
      front += MIB;
      long kept = front - dropped();
      assertTrue(kept >= DropBehind.LAG_BYTES || dropped() == 0, "kept only " + kept);
      assertTrue(
          kept < DropBehind.LAG_BYTES + DropBehind.STEP_BYTES, "kept " + kept + " at " + front);
    }
    assertDropsCover(0, front - DropBehind.LAG_BYTES - (front - DropBehind.LAG_BYTES) % (16 * MIB));
  }

  @Test
  void readaheadAnsweredOutOfOrderStillCountsAsOneRun() {
    // windows of 8 READs of 128 KiB, each window answered backwards (as parallel workers may)
    long chunk = 128 * 1024;
    long end = 0;
    for (long window = 0; window < 100 * MIB; window += 8 * chunk) {
      for (int i = 7; i >= 0; i--) {
        dropBehind.read(window + i * chunk, chunk);
      }
      end = window + 8 * chunk;
    }
    assertTrue(!drops.isEmpty(), "nothing dropped");
    assertEquals(0, drops.get(0)[0]);
    assertTrue(end - dropped() >= DropBehind.LAG_BYTES);
    assertTrue(end - dropped() < DropBehind.LAG_BYTES + DropBehind.STEP_BYTES);
  }

  @Test
  void randomReadersDropNothing() {
    Random random = new Random(5);
    for (long fileBytes : new long[] {64 * MIB, 4096 * MIB}) {
      for (int i = 0; i < 100_000; i++) {
        dropBehind.read((random.nextLong(fileBytes) / 4096) * 4096, 4096);
      }
    }
    assertEquals(List.of(), drops.stream().map(d -> d[0] + "-" + d[1]).toList());
  }

  @Test
  void aJumpStartsANewRunThatDropsOnlyFromWhereItStarted() {
    for (long at = 0; at < 40 * MIB; at += MIB) { // not yet past lag + step
      dropBehind.read(at, MIB);
    }
    assertEquals(0, drops.size());
    long start = 1000 * MIB;
    for (long at = start; at < start + 100 * MIB; at += MIB) {
      dropBehind.read(at, MIB);
    }
    assertTrue(!drops.isEmpty(), "nothing dropped");
    assertEquals(start, drops.get(0)[0], "the new run drops from its own start");
    long to = start + 100 * MIB - DropBehind.LAG_BYTES;
    assertDropsCover(start, to - (to - start) % (16 * MIB));
  }

  @Test
  void rereadingBehindTheFrontDropsNothingNew() {
    for (long at = 0; at < 64 * MIB; at += MIB) {
      dropBehind.read(at, MIB);
    }
    int before = drops.size();
    for (long at = 40 * MIB; at < 60 * MIB; at += MIB) { // inside the run, behind its front
      dropBehind.read(at, MIB);
    }
    assertEquals(before, drops.size());
  }
}
