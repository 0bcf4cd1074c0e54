package org.jqcowfs.qcow2.compress;

import com.github.luben.zstd.ZstdDecompressCtx;
import com.github.luben.zstd.ZstdException;
import java.nio.ByteBuffer;
import java.util.zip.DataFormatException;
import java.util.zip.Inflater;

/**
 * Decompresses one compressed cluster. The stored stream is an upper bound: decoding stops once the
 * destination is full, and fails if the stream ends first. Implementations keep one context per
 * thread; they are thread-safe.
 */
public interface Decompressor {

  /**
   * Fills {@code dst} completely from the stream in {@code src}.
   *
   * @param src compressed bytes, from position to limit (a direct buffer)
   * @param dst the cluster, from position to limit (a direct buffer)
   * @throws DataFormatException if the stream is invalid or yields fewer or more bytes than {@code
   *     dst} holds
   */
  void decompress(ByteBuffer src, ByteBuffer dst) throws DataFormatException;

  /** The name QEMU uses: "zlib" or "zstd". */
  String name();

  /** The decompressor for a header {@code compression_type}: 0 deflate, 1 zstd. */
  static Decompressor forType(int compressionType) {
    return compressionType == 1 ? new Zstd() : new Deflate();
  }

  /**
   * Raw deflate (RFC 1951, no zlib header), as QEMU's {@code qcow2_zlib_decompress}: success once
   * the cluster is full, whether or not the stream has ended. libdeflate decodes a stream that
   * yields exactly the cluster; anything else (a longer stream, bad data) is decided by {@link
   * Inflater}, which applies zlib's rules.
   */
  final class Deflate implements Decompressor {
    private final ThreadLocal<Inflater> inflaters =
        ThreadLocal.withInitial(() -> new Inflater(true));

    @Override
    public void decompress(ByteBuffer src, ByteBuffer dst) throws DataFormatException {
      if (LibDeflate.available()
          && src.isDirect()
          && dst.isDirect()
          && LibDeflate.decompress(src, dst) == dst.remaining()) {
        src.position(src.limit());
        dst.position(dst.limit());
        return;
      }
      Inflater inflater = inflaters.get();
      inflater.reset();
      inflater.setInput(src);
      while (dst.hasRemaining()) {
        int n = inflater.inflate(dst);
        if (n == 0
            && (inflater.finished() || inflater.needsInput() || inflater.needsDictionary())) {
          throw new DataFormatException(
              "deflate stream ends "
                  + dst.remaining()
                  + " bytes short of the cluster"
                  + (inflater.needsDictionary() ? " (asks for a dictionary)" : ""));
        }
      }
    }

    @Override
    public String name() {
      return "zlib";
    }
  }

  /**
   * zstd frames, as QEMU's {@code qcow2_zstd_decompress}: decode until the cluster is full (a
   * cluster may hold several frames); the last frame must then be complete.
   */
  final class Zstd implements Decompressor {
    private final ThreadLocal<ZstdDecompressCtx> contexts =
        ThreadLocal.withInitial(ZstdDecompressCtx::new);

    @Override
    public void decompress(ByteBuffer src, ByteBuffer dst) throws DataFormatException {
      ZstdDecompressCtx ctx = contexts.get();
      ctx.reset();
      boolean frameDone = false;
      try {
        while (dst.hasRemaining()) {
          int in = src.position();
          int out = dst.position();
          frameDone = ctx.decompressDirectByteBufferStream(dst, src);
          if (src.position() == in && dst.position() == out) {
            throw new DataFormatException(
                "zstd stream ends " + dst.remaining() + " bytes short of the cluster");
          }
        }
        if (!frameDone && src.hasRemaining()) {
          frameDone = ctx.decompressDirectByteBufferStream(dst, src);
        }
      } catch (ZstdException e) {
        throw new DataFormatException("zstd: " + e.getMessage());
      }
      if (!frameDone) {
        throw new DataFormatException("zstd frame does not end with the cluster");
      }
    }

    @Override
    public String name() {
      return "zstd";
    }
  }
}
