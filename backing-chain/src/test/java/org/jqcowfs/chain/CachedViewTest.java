package org.jqcowfs.chain;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.storage.CachedView;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link BackingChain#cachedView}: a range stored raw in one cached host range of the layer that
 * allocates it comes as a view of the page cache, with qemu-img convert's bytes; every other kind
 * of range (split between layers, zero or compressed clusters, past a shorter backing file, not
 * cached) has no view.
 */
class CachedViewTest {
  private static final int MIB = 1 << 20;

  @TempDir Path dir;

  private Path top;
  private byte[] want;

  /**
   * An 8 MiB qcow2 overlay over a 6 MiB raw backing file: the overlay holds 2-3 MiB, a zero cluster
   * at 4 MiB and a compressed cluster at 5 MiB; the rest comes from the backing file, or reads as
   * zeros past its end.
   */
  @BeforeEach
  void chain() throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "raw", "base.raw", "6M");
    Qemu.run(dir, "qemu-io", "-f", "raw", "-c", "write -q -P 0x11 0 6M", "base.raw");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "top.qcow2", "8M");
    Qemu.io(
        dir,
        "top.qcow2",
        "write -q -P 0x22 2M 1M",
        "write -q -z 4M 64k",
        "write -q -c -P 0x33 5M 64k");
    top = dir.resolve("top.qcow2");
    want = Files.readAllBytes(Qemu.convertRaw(top, dir.resolve("top.raw"), null));
    Files.readAllBytes(top); // both files in the page cache
    Files.readAllBytes(dir.resolve("base.raw"));
  }

  @Test
  void rawCachedRangesAreViewsWithQemusBytes() throws Exception {
    try (BackingChain chain = ChainOpener.open(top)) {
      assertView(chain, 0, MIB); // from the raw backing file
      assertView(chain, 2 * MIB, MIB); // from the overlay
      assertView(chain, 2 * MIB + 100, 4096); // not page-aligned in the host file
      assertView(chain, 6 * MIB - 4096, 4096); // the backing file's last page
    }
  }

  @Test
  void otherRangesHaveNoView() throws Exception {
    try (BackingChain chain = ChainOpener.open(top)) {
      assertNull(chain.cachedView(MIB + MIB / 2, MIB), "half backing file, half overlay");
      assertNull(chain.cachedView(4 * MIB, MIB), "a zero cluster in the range");
      assertNull(chain.cachedView(5 * MIB, 65536), "a compressed cluster");
      assertNull(chain.cachedView(6 * MIB - 4096, 8192), "runs past the backing file's end");
      assertNull(chain.cachedView(7 * MIB, MIB), "past the backing file's end: zeros");
      assertThrows(IllegalArgumentException.class, () -> chain.cachedView(8 * MIB - 4096, 8192));
    }
  }

  @Test
  void rangesTheCacheDoesNotHoldHaveNoView() throws Exception {
    try (BackingChain chain = ChainOpener.open(top)) {
      chain.blockStatus(2 * MIB, MIB); // the L2 table read (and the readahead after it) done
      Qemu.run(dir, "sync", top.toString());
      Qemu.run(dir, "dd", "if=" + top, "iflag=nocache", "count=0", "status=none");
      String cached =
          Qemu.run(dir, "fincore", "--bytes", "--noheadings", "--output", "RES", top.toString());
      assumeTrue(Long.parseLong(cached.trim()) < MIB, "the image stays cached (tmpfs?): " + cached);
      assertNull(chain.cachedView(2 * MIB, MIB), "the overlay's data is not cached");
      assertView(chain, 0, MIB); // the backing file still is
    }
  }

  /** A data cluster cut off by a truncated file: an error naming the file, never a mapping. */
  @Test
  void aClusterPastTheEndOfTheFileIsAnError() throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "cut.qcow2", "4M");
    Qemu.io(dir, "cut.qcow2", "write -q -P 0x44 0 1M");
    Path cut = dir.resolve("cut.qcow2");
    try (java.nio.channels.FileChannel f =
        java.nio.channels.FileChannel.open(cut, java.nio.file.StandardOpenOption.WRITE)) {
      f.truncate(f.size() - 65536);
    }
    Files.readAllBytes(cut);
    try (BackingChain chain = ChainOpener.open(cut)) {
      java.io.IOException e =
          assertThrows(java.io.IOException.class, () -> chain.cachedView(0, MIB));
      assertTrue(e.getMessage().contains(cut.toString()), e.getMessage());
      assertTrue(e.getMessage().contains("past the end of the file"), e.getMessage());
      assertView(chain, 0, MIB - 65536, cut); // the clusters still in the file are fine
    }
  }

  private void assertView(BackingChain chain, long offset, int length) throws Exception {
    assertView(chain, offset, length, top);
  }

  /** Asserts that the range is a view holding qemu-img convert's bytes of {@code image}. */
  private void assertView(BackingChain chain, long offset, int length, Path image)
      throws Exception {
    byte[] want =
        image.equals(top)
            ? this.want
            : Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("ref.raw"), null));
    try (CachedView view = chain.cachedView(offset, length)) {
      assertNotNull(view, "no view of " + length + " bytes at " + offset);
      ByteBuffer bytes = view.bytes();
      assertTrue(bytes.isReadOnly());
      byte[] got = new byte[bytes.remaining()];
      bytes.get(got);
      assertArrayEquals(
          Arrays.copyOfRange(want, (int) offset, (int) offset + length),
          got,
          length + " bytes at " + offset);
    }
  }
}
