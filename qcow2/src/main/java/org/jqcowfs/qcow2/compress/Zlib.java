package org.jqcowfs.qcow2.compress;

import com.kenai.jffi.HeapInvocationBuffer;
import com.kenai.jffi.Invoker;
import com.kenai.jffi.Library;
import com.kenai.jffi.MemoryIO;
import com.kenai.jffi.Type;
import java.nio.ByteBuffer;
import org.jqcowfs.io.NativeFunction;

/**
 * The system's zlib deflate (Debian's essential package zlib1g), called through jffi as {@link
 * LibDeflate} is: the JDK's {@link java.util.zip.Deflater} cannot set {@code windowBits}, and QEMU
 * writes and reads compressed clusters with a 4 KiB window ({@link Compressor.Deflate}). Each
 * thread keeps one {@code z_stream}, initialised once and reset per cluster ({@code deflateReset});
 * never freed (the threads are the process's pools).
 */
final class Zlib {
  /** {@code Z_OK}, {@code Z_STREAM_END}, {@code Z_FINISH}. */
  private static final int Z_OK = 0;

  private static final int Z_STREAM_END = 1;
  private static final int Z_FINISH = 4;

  /** {@code sizeof(z_stream)} on an LP64 system, and the offsets of the fields set here. */
  private static final int Z_STREAM_BYTES = 112;

  private static final int NEXT_IN = 0;
  private static final int AVAIL_IN = 8;
  private static final int NEXT_OUT = 24;
  private static final int AVAIL_OUT = 32;
  private static final int TOTAL_OUT = 40;

  private static final MemoryIO MEMORY = MemoryIO.getInstance();
  private static final Invoker INVOKER = Invoker.getInstance();

  private static final Functions NATIVE = load();

  private static final ThreadLocal<Long> STREAMS = ThreadLocal.withInitial(Zlib::newStream);

  private Zlib() {}

  /**
   * {@code deflateInit2_}, {@code deflate}, {@code deflateReset} and {@code zlibVersion} from
   * {@code zlib.h}.
   */
  private record Functions(
      NativeFunction init, NativeFunction deflate, NativeFunction reset, long version) {}

  private static Functions load() {
    Library lib = null;
    for (String name : new String[] {"libz.so.1", "libz.so"}) {
      lib = lib != null ? lib : Library.getCachedInstance(name, Library.LAZY | Library.LOCAL);
    }
    if (lib == null) {
      return null;
    }
    NativeFunction init =
        NativeFunction.find(
            lib,
            "deflateInit2_",
            false,
            8,
            Type.SINT32,
            Type.POINTER,
            Type.SINT32,
            Type.SINT32,
            Type.SINT32,
            Type.SINT32,
            Type.SINT32,
            Type.POINTER,
            Type.SINT32);
    NativeFunction deflate =
        NativeFunction.find(lib, "deflate", false, 2, Type.SINT32, Type.POINTER, Type.SINT32);
    NativeFunction reset =
        NativeFunction.find(lib, "deflateReset", false, 1, Type.SINT32, Type.POINTER);
    NativeFunction version = NativeFunction.find(lib, "zlibVersion", false, 0, Type.POINTER);
    if (init == null || deflate == null || reset == null || version == null) {
      return null;
    }
    return new Functions(
        init, deflate, reset, INVOKER.invokeN0(version.context(), version.address()));
  }

  /** A {@code z_stream} set up as QEMU's {@code qcow2_zlib_compress} sets it up. */
  private static Long newStream() {
    if (NATIVE == null) {
      throw new UnsupportedOperationException(
          "zlib compression needs the system's libz.so.1 (Debian package zlib1g)");
    }
    long strm = MEMORY.allocateMemory(Z_STREAM_BYTES, true); // zalloc, zfree, opaque: Z_NULL
    HeapInvocationBuffer args = new HeapInvocationBuffer(NATIVE.init().context());
    args.putAddress(strm);
    args.putInt(-1); // Z_DEFAULT_COMPRESSION
    args.putInt(8); // Z_DEFLATED
    args.putInt(-12); // raw deflate, 4 KiB window
    args.putInt(9); // memLevel
    args.putInt(0); // Z_DEFAULT_STRATEGY
    args.putAddress(NATIVE.version());
    args.putInt(Z_STREAM_BYTES);
    int r = INVOKER.invokeInt(NATIVE.init().context(), NATIVE.init().address(), args);
    if (r != Z_OK) {
      MEMORY.freeMemory(strm);
      throw new IllegalStateException("zlib deflateInit2 failed: " + r);
    }
    return strm;
  }

  /** As {@link Compressor#compress}: both buffers direct. */
  static int deflate(ByteBuffer src, ByteBuffer dst) {
    long strm = STREAMS.get();
    INVOKER.invokeN1(NATIVE.reset().context(), NATIVE.reset().address(), strm);
    MEMORY.putAddress(strm + NEXT_IN, MEMORY.getDirectBufferAddress(src) + src.position());
    MEMORY.putInt(strm + AVAIL_IN, src.remaining());
    MEMORY.putAddress(strm + NEXT_OUT, MEMORY.getDirectBufferAddress(dst));
    MEMORY.putInt(strm + AVAIL_OUT, dst.limit());
    int r =
        (int)
            INVOKER.invokeN2(
                NATIVE.deflate().context(), NATIVE.deflate().address(), strm, Z_FINISH);
    return r == Z_STREAM_END ? (int) MEMORY.getLong(strm + TOTAL_OUT) : -1;
  }
}
