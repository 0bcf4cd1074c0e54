package org.jqcowfs.qcow2.compress;

import com.kenai.jffi.Invoker;
import com.kenai.jffi.Library;
import com.kenai.jffi.MemoryIO;
import com.kenai.jffi.Type;
import java.nio.ByteBuffer;
import org.jqcowfs.io.NativeFunction;
import org.jqcowfs.io.Posix;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * libdeflate's raw-deflate decompressor (Debian package libdeflate0), called through jffi like
 * {@link Posix}: about twice as fast as zlib on qcow2 clusters. Absent library: {@link
 * #available()} is false and callers use {@link java.util.zip.Inflater}.
 */
final class LibDeflate {
  private static final Logger LOG = LoggerFactory.getLogger(LibDeflate.class);

  /** {@code enum libdeflate_result}: LIBDEFLATE_SUCCESS. */
  static final int SUCCESS = 0;

  private static final MemoryIO MEMORY = MemoryIO.getInstance();

  /** The library's two functions, or null without it. */
  private static final Functions NATIVE = load();

  /**
   * Each thread's decompressor (reused, as libdeflate intends) and the native {@code size_t} that
   * receives the bytes produced; never freed (the threads are the process's pools).
   */
  private static final ThreadLocal<long[]> DECOMPRESSORS =
      ThreadLocal.withInitial(
          () -> new long[] {NATIVE.allocDecompressor(), MEMORY.allocateMemory(Long.BYTES, true)});

  private LibDeflate() {}

  /**
   * {@code struct libdeflate_decompressor *libdeflate_alloc_decompressor(void)} and {@code enum
   * libdeflate_result libdeflate_deflate_decompress(struct libdeflate_decompressor *, const void
   * *in, size_t in_nbytes, void *out, size_t out_nbytes_avail, size_t *actual_out_nbytes_ret)},
   * from {@code libdeflate.h}.
   */
  private record Functions(NativeFunction alloc, NativeFunction decompress) {
    long allocDecompressor() {
      return Invoker.getInstance().invokeN0(alloc.context(), alloc.address());
    }

    int decompress(long d, long in, long inBytes, long out, long outBytes, long produced) {
      return (int)
          Invoker.getInstance()
              .invokeN6(
                  decompress.context(),
                  decompress.address(),
                  d,
                  in,
                  inBytes,
                  out,
                  outBytes,
                  produced);
    }
  }

  private static Functions load() {
    if (Boolean.getBoolean("jqcowfs.noLibdeflate")) {
      return null;
    }
    Library lib = null;
    for (String name : new String[] {"libdeflate.so.0", "libdeflate.so"}) {
      lib = lib != null ? lib : Library.getCachedInstance(name, Library.LAZY | Library.LOCAL);
    }
    if (lib == null) {
      LOG.debug(
          "libdeflate not found ({}); deflate clusters use java.util.zip.Inflater",
          Library.getLastError());
      return null;
    }
    NativeFunction alloc =
        NativeFunction.find(lib, "libdeflate_alloc_decompressor", false, 0, Type.POINTER);
    NativeFunction decompress =
        NativeFunction.find(
            lib,
            "libdeflate_deflate_decompress",
            false,
            6,
            Type.SINT32,
            Type.POINTER,
            Type.POINTER,
            Type.UINT64,
            Type.POINTER,
            Type.UINT64,
            Type.POINTER);
    if (alloc == null || decompress == null) {
      LOG.debug("libdeflate lacks its decompressor; deflate clusters use java.util.zip.Inflater");
      return null;
    }
    return new Functions(alloc, decompress);
  }

  /** Whether libdeflate was loaded. */
  static boolean available() {
    return NATIVE != null;
  }

  /**
   * Decompresses the whole stream in {@code src} (position to limit) into {@code dst} (position to
   * limit), without moving either position. Both buffers are direct.
   *
   * @return the bytes produced, or -1 if libdeflate reports anything but success (bad data, more
   *     output than {@code dst} holds) or could not allocate a decompressor; the caller then
   *     decides with zlib's rules
   */
  static long decompress(ByteBuffer src, ByteBuffer dst) {
    long[] d = DECOMPRESSORS.get();
    if (d[0] == 0 || d[1] == 0) {
      return -1;
    }
    long in = MEMORY.getDirectBufferAddress(src) + src.position();
    long out = MEMORY.getDirectBufferAddress(dst) + dst.position();
    int r = NATIVE.decompress(d[0], in, src.remaining(), out, dst.remaining(), d[1]);
    return r == SUCCESS ? MEMORY.getLong(d[1]) : -1;
  }
}
