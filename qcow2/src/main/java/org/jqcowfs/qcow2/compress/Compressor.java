package org.jqcowfs.qcow2.compress;

import com.github.luben.zstd.ZstdCompressCtx;
import com.github.luben.zstd.ZstdException;
import java.nio.ByteBuffer;

/**
 * Compresses one cluster for a compressed cluster's host bytes, as QEMU's {@code qcow2_co_compress}
 * does for {@code qemu-img convert -c}. Implementations keep one context per thread; they are
 * thread-safe, so that the clusters of a convert compress on all cores.
 */
public interface Compressor {

  /**
   * Compresses all of {@code src} into {@code dst}.
   *
   * @param src the cluster, position to limit (a direct buffer); the position is not moved
   * @param dst room for the compressed bytes from position 0 to its limit (a direct buffer)
   * @return the compressed bytes written at {@code dst}'s start, or -1 when they would not fit
   *     (QEMU's {@code -ENOMEM}: the cluster is then stored uncompressed)
   */
  int compress(ByteBuffer src, ByteBuffer dst);

  /** The compressor for a header {@code compression_type}: 0 deflate, 1 zstd. */
  static Compressor forType(int compressionType) {
    return compressionType == 1 ? new Zstd() : new Deflate();
  }

  /**
   * Raw deflate with a 4 KiB window, as QEMU's {@code qcow2_zlib_compress} ({@code
   * deflateInit2(Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY)}), through the
   * system's zlib ({@link Zlib}): QEMU inflates with {@code windowBits} -12, and {@link
   * java.util.zip.Deflater}'s fixed 32 KiB window refers further back than a decoder with that
   * window must accept (zlib copes only because QEMU inflates a whole cluster in one call). The
   * same window also gives qemu-img's sizes: on data repeating every 8 KiB the 32 KiB window made
   * 36% smaller streams (ConvertQcow2Test).
   */
  final class Deflate implements Compressor {
    @Override
    public int compress(ByteBuffer src, ByteBuffer dst) {
      return Zlib.deflate(src, dst);
    }
  }

  /**
   * One zstd frame at zstd's default level (3), as QEMU's {@code qcow2_zstd_compress}: {@code
   * ZSTD_compressStream2} with {@code ZSTD_e_end} in one call.
   */
  final class Zstd implements Compressor {
    private final ThreadLocal<ZstdCompressCtx> contexts =
        ThreadLocal.withInitial(() -> new ZstdCompressCtx().setLevel(3));

    @Override
    public int compress(ByteBuffer src, ByteBuffer dst) {
      try {
        return contexts
            .get()
            .compressDirectByteBuffer(dst, 0, dst.limit(), src, src.position(), src.remaining());
      } catch (ZstdException e) {
        return -1; // dstSize_tooSmall: QEMU's -ENOMEM, the cluster stays uncompressed
      }
    }
  }
}
