package org.jqcowfs.fuse.transport;

import com.kenai.jffi.MemoryIO;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.List;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.storage.Storage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One worker's reply to {@code /dev/fuse}: its buffer ({@code fuse_out_header} then the payload,
 * which starts on a page boundary), where the payload is ({@link ReplyPayload}), and the {@code
 * struct iovec} array for a lent payload (the header's, written once, then one per lent run). Used
 * by one worker thread at a time.
 */
final class DevFuseReply {
  private static final Logger LOG = LoggerFactory.getLogger(FuseSession.class);

  /** Reply header bytes ({@code struct fuse_out_header}). */
  static final int OUT_HEADER_BYTES = 16;

  /** {@code sizeof(struct iovec)} on 64-bit Linux: base address, then length. */
  private static final int IOVEC_BYTES = 16;

  private final ByteBuffer buffer;
  private final ReplyPayload payload;
  private final ByteBuffer iov;

  DevFuseReply() {
    // The payload starts on a page boundary, so that READs of image data that is not cached go
    // around the page cache (Storage): a buffered read there started the kernel's readahead on
    // the image file, and a cold dd of an in-order image then drifted back to the page cache.
    int align = Storage.DIRECT_ALIGNMENT;
    ByteBuffer buffer =
        Storage.alignedBuffer(align + FuseOps.MAX_READ_BYTES)
            .slice(align - OUT_HEADER_BYTES, OUT_HEADER_BYTES + FuseOps.MAX_READ_BYTES)
            .order(ByteOrder.nativeOrder());
    ByteBuffer iov =
        ByteBuffer.allocateDirect((1 + ReplyPayload.MAX_PARTS) * IOVEC_BYTES)
            .order(ByteOrder.nativeOrder())
            .putLong(0, MemoryIO.getInstance().getDirectBufferAddress(buffer))
            .putLong(8, OUT_HEADER_BYTES); // the header's iovec; the lent runs follow it
    this.buffer = buffer;
    this.payload = new ReplyPayload();
    this.iov = iov;
  }

  /** Where the dispatcher writes the payload: the buffer after the header. */
  ByteBuffer payloadBuffer() {
    return buffer
        .slice(OUT_HEADER_BYTES, buffer.capacity() - OUT_HEADER_BYTES)
        .order(ByteOrder.nativeOrder());
  }

  /** Where the dispatcher lends the payload from instead. */
  ReplyPayload payload() {
    return payload;
  }

  /**
   * Writes the reply: one write of header and payload from the reply buffer, or, when the payload
   * is lent ({@link ReplyPayload}), one writev of the header and the lent bytes, which are then
   * released. A reply the kernel refuses (EINVAL for a malformed one) is answered EIO instead, so
   * that no request is left unanswered.
   */
  void send(int fd, long unique, int error, int length) {
    int total = OUT_HEADER_BYTES + length;
    buffer.putInt(0, total).putInt(4, -error).putLong(8, unique);
    List<ByteBuffer> lent = payload.lent();
    long n;
    if (lent.isEmpty()) {
      n = LibC.write(fd, buffer, total);
    } else {
      MemoryIO memory = MemoryIO.getInstance();
      int at = IOVEC_BYTES;
      for (ByteBuffer part : lent) {
        iov.putLong(at, memory.getDirectBufferAddress(part) + part.position());
        iov.putLong(at + 8, part.remaining());
        at += IOVEC_BYTES;
      }
      n = LibC.writev(fd, iov, 1 + lent.size());
      payload.release();
    }
    if (n < 0) {
      int err = LibC.errno();
      if (err != Errno.ENOENT) { // ENOENT: the request was interrupted and is gone
        LOG.warn("writing FUSE reply: {}", LibC.strerror(err));
        if (error == 0) { // the kernel refused the reply: answer EIO, or the caller waits forever
          send(fd, unique, Errno.EIO, 0);
        }
      }
    }
  }
}
