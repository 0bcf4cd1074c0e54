package org.jqcowfs.remote;

import java.util.concurrent.atomic.LongAdder;

/** What the remote storages of one opener have done so far: reported at unmount. Thread-safe. */
public final class RemoteStats {
  final LongAdder requests = new LongAdder();
  final LongAdder retries = new LongAdder();
  final LongAdder bytesFetched = new LongAdder();
  final LongAdder cacheHitBytes = new LongAdder();
  final LongAdder diskHitBytes = new LongAdder();

  /** HTTP requests sent, retries included. */
  public long requests() {
    return requests.sum();
  }

  /** Requests sent again after a timeout, a cut body or a 5xx/429 answer. */
  public long retries() {
    return retries.sum();
  }

  /** Bytes of range bodies received. */
  public long bytesFetched() {
    return bytesFetched.sum();
  }

  /** Bytes read from the block cache instead of the server. */
  public long cacheHitBytes() {
    return cacheHitBytes.sum();
  }

  /** Bytes read from the on-disk cache ({@code --cache-dir}) instead of the server. */
  public long diskHitBytes() {
    return diskHitBytes.sum();
  }

  @Override
  public String toString() {
    return requests()
        + " requests ("
        + retries()
        + " retries), "
        + bytesFetched()
        + " bytes fetched, "
        + cacheHitBytes()
        + " bytes from the cache"
        + (diskHitBytes() > 0 ? ", " + diskHitBytes() + " bytes from the disk cache" : "");
  }
}
