package org.jqcowfs.qcow2;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.List;
import org.jqcowfs.qcow2.metadata.Mapping;

/**
 * Reads the runs whose host bytes are not the guest bytes as they are ({@link
 * Mapping.ReadKind#DECODED}): compressed clusters today ({@link CompressedClusterReader}),
 * encrypted clusters next. The one place such bytes are turned into guest bytes: no read path
 * copies or maps them itself. Thread-safe.
 */
interface ClusterDecoder {

  /**
   * A run to decode and where its bytes go.
   *
   * @param run the mapped run, {@link Mapping.ReadKind#DECODED}
   * @param dst the guest bytes wanted, from position to limit, inside the run
   * @param guestOffset the guest offset of {@code dst}'s first byte
   */
  record Part(Mapping run, ByteBuffer dst, long guestOffset) {}

  /**
   * Fills every part's {@code dst} (positions are left as they were).
   *
   * @param parts in guest order
   * @throws IOException the first failure: a read error, or an {@link
   *     org.jqcowfs.image.ImageFormatException} naming the cluster's L1/L2 place and host offset
   */
  void read(List<Part> parts) throws IOException;
}
