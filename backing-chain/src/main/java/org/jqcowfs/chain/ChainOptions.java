package org.jqcowfs.chain;

/**
 * How to open a backing chain.
 *
 * @param maxDepth the most layers below the top image, at least 1 (default 64)
 * @param l2CacheBytes L2 cache bytes per qcow2 layer, -1 for QEMU's default
 * @param snapshot id or name of an internal snapshot of the top image to show, or null
 * @param forceShare true: take no QEMU-compatible locks ({@code qemu-img -U}), and so read images
 *     that another process writes; false: lock every file as a reader ({@link
 *     org.jqcowfs.qcow2.ImageLock})
 */
public record ChainOptions(int maxDepth, long l2CacheBytes, String snapshot, boolean forceShare) {
  /** The default cap on chain depth. */
  public static final int DEFAULT_MAX_DEPTH = 64;

  /** Defaults: depth cap 64, QEMU's cache size, the active image, locks taken. */
  public static final ChainOptions DEFAULT = new ChainOptions(DEFAULT_MAX_DEPTH, -1, null, false);

  public ChainOptions {
    if (maxDepth < 1) {
      throw new IllegalArgumentException("maxDepth must be >= 1: " + maxDepth);
    }
  }

  /** These options with a snapshot of the top image (null: the active image). */
  public ChainOptions withSnapshot(String idOrName) {
    return new ChainOptions(maxDepth, l2CacheBytes, idOrName, forceShare);
  }

  /** These options with {@code forceShare} set as given. */
  public ChainOptions withForceShare(boolean share) {
    return new ChainOptions(maxDepth, l2CacheBytes, snapshot, share);
  }
}
