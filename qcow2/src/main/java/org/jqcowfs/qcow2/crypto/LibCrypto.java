package org.jqcowfs.qcow2.crypto;

import com.kenai.jffi.HeapInvocationBuffer;
import com.kenai.jffi.Invoker;
import com.kenai.jffi.Library;
import com.kenai.jffi.MemoryIO;
import com.kenai.jffi.Type;
import org.jqcowfs.io.NativeFunction;

/**
 * OpenSSL's {@code PKCS5_PBKDF2_HMAC} (libcrypto, Debian package libssl3), called through jffi as
 * the zlib and libdeflate bindings are: a LUKS key slot's PBKDF2 at the speed QEMU's crypto library
 * reaches (403,546 SHA-256 iterations in 0.13 s here, against 0.4 s for the JDK's before its JIT
 * has warmed up). Absent library: {@link #pbkdf2} returns null and {@link Luks} uses the JDK's or
 * BouncyCastle's. The password and the result pass through native memory that is zeroed before it
 * is freed.
 */
final class LibCrypto {
  private static final MemoryIO MEMORY = MemoryIO.getInstance();
  private static final Invoker INVOKER = Invoker.getInstance();
  private static final Functions NATIVE = load();

  private LibCrypto() {}

  /** {@code PKCS5_PBKDF2_HMAC} and the three {@code EVP_MD}s a LUKS header may name. */
  private record Functions(NativeFunction pbkdf2, long sha1, long sha256, long sha512) {}

  private static Functions load() {
    if (Boolean.getBoolean("jqcowfs.noLibcrypto")) {
      return null;
    }
    Library lib = null;
    for (String name : new String[] {"libcrypto.so.3", "libcrypto.so"}) {
      lib = lib != null ? lib : Library.getCachedInstance(name, Library.LAZY | Library.LOCAL);
    }
    if (lib == null) {
      return null;
    }
    NativeFunction pbkdf2 =
        NativeFunction.find(
            lib,
            "PKCS5_PBKDF2_HMAC",
            false,
            8,
            Type.SINT32,
            Type.POINTER,
            Type.SINT32,
            Type.POINTER,
            Type.SINT32,
            Type.SINT32,
            Type.POINTER,
            Type.SINT32,
            Type.POINTER);
    long[] md = new long[3];
    String[] names = {"EVP_sha1", "EVP_sha256", "EVP_sha512"};
    for (int i = 0; i < 3; i++) {
      NativeFunction f = NativeFunction.find(lib, names[i], false, 0, Type.POINTER);
      if (f == null) {
        return null;
      }
      md[i] = INVOKER.invokeN0(f.context(), f.address());
    }
    if (pbkdf2 == null || md[0] == 0 || md[1] == 0 || md[2] == 0) {
      return null;
    }
    return new Functions(pbkdf2, md[0], md[1], md[2]);
  }

  /**
   * PBKDF2 with HMAC over {@code hashSpec} ("sha1", "sha256", "sha512"), or null when libcrypto is
   * not there or fails.
   */
  static byte[] pbkdf2(String hashSpec, byte[] password, byte[] salt, int iterations, int bytes) {
    if (NATIVE == null) {
      return null;
    }
    long md =
        switch (hashSpec) {
          case "sha1" -> NATIVE.sha1();
          case "sha256" -> NATIVE.sha256();
          default -> NATIVE.sha512();
        };
    long pass = MEMORY.allocateMemory(Math.max(1, password.length), true);
    long s = MEMORY.allocateMemory(Math.max(1, salt.length), true);
    long out = MEMORY.allocateMemory(bytes, true);
    try {
      MEMORY.putByteArray(pass, password, 0, password.length);
      MEMORY.putByteArray(s, salt, 0, salt.length);
      HeapInvocationBuffer args = new HeapInvocationBuffer(NATIVE.pbkdf2().context());
      args.putAddress(pass);
      args.putInt(password.length);
      args.putAddress(s);
      args.putInt(salt.length);
      args.putInt(iterations);
      args.putAddress(md);
      args.putInt(bytes);
      args.putAddress(out);
      int ok = INVOKER.invokeInt(NATIVE.pbkdf2().context(), NATIVE.pbkdf2().address(), args);
      if (ok != 1) {
        return null;
      }
      byte[] key = new byte[bytes];
      MEMORY.getByteArray(out, key, 0, bytes);
      return key;
    } finally {
      MEMORY.setMemory(pass, Math.max(1, password.length), (byte) 0);
      MEMORY.setMemory(out, bytes, (byte) 0);
      MEMORY.freeMemory(pass);
      MEMORY.freeMemory(s);
      MEMORY.freeMemory(out);
    }
  }
}
