package org.jqcowfs.qcow2.crypto;

import com.kenai.jffi.HeapInvocationBuffer;
import com.kenai.jffi.Invoker;
import com.kenai.jffi.Library;
import com.kenai.jffi.MemoryIO;
import com.kenai.jffi.Type;
import org.jqcowfs.io.NativeFunction;

/**
 * Native PBKDF2, called through jffi as the zlib and libdeflate bindings are: Nettle's {@code
 * nettle_pbkdf2_hmac_sha*} (libnettle8, which QEMU's GnuTLS crypto uses: the same speed as QEMU,
 * twice OpenSSL 3's here), else OpenSSL's {@code PKCS5_PBKDF2_HMAC} (libcrypto, libssl3). A key
 * slot QEMU made with its default 2 s opened in 4.9 s through OpenSSL, 2.3 s through Nettle
 * (docs/performance.md); the JDK's takes 0.4 s for 403,546 SHA-256 iterations before its JIT has
 * warmed up, OpenSSL 0.13 s. Neither library: {@link #pbkdf2} returns null and {@link Luks} uses
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

  /** Nettle's PBKDF2 for each hash a LUKS header may name. */
  private record Nettle(NativeFunction sha1, NativeFunction sha256, NativeFunction sha512) {}

  private static final Nettle NETTLE = loadNettle();

  private static Nettle loadNettle() {
    if (Boolean.getBoolean("jqcowfs.noNettle")) {
      return null;
    }
    Library lib = null;
    for (String name : new String[] {"libnettle.so.8", "libnettle.so"}) {
      lib = lib != null ? lib : Library.getCachedInstance(name, Library.LAZY | Library.LOCAL);
    }
    if (lib == null) {
      return null;
    }
    NativeFunction[] f = new NativeFunction[3];
    String[] names = {"sha1", "sha256", "sha512"};
    for (int i = 0; i < 3; i++) {
      // void nettle_pbkdf2_hmac_X(size_t key_length, const uint8_t *key, unsigned iterations,
      //                           size_t salt_length, const uint8_t *salt, size_t length,
      //                           uint8_t *dst)
      f[i] =
          NativeFunction.find(
              lib,
              "nettle_pbkdf2_hmac_" + names[i],
              false,
              7,
              Type.VOID,
              Type.UINT64,
              Type.POINTER,
              Type.UINT32,
              Type.UINT64,
              Type.POINTER,
              Type.UINT64,
              Type.POINTER);
      if (f[i] == null) {
        return null;
      }
    }
    return new Nettle(f[0], f[1], f[2]);
  }

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
   * PBKDF2 with HMAC over {@code hashSpec} ("sha1", "sha256", "sha512"): Nettle's, else OpenSSL's;
   * null when neither library is there or the call fails.
   */
  static byte[] pbkdf2(String hashSpec, byte[] password, byte[] salt, int iterations, int bytes) {
    byte[] key = nettle(hashSpec, password, salt, iterations, bytes);
    return key != null ? key : openSsl(hashSpec, password, salt, iterations, bytes);
  }

  /** Nettle's {@code nettle_pbkdf2_hmac_*}, or null without libnettle. */
  static byte[] nettle(String hashSpec, byte[] password, byte[] salt, int iterations, int bytes) {
    if (NETTLE == null) {
      return null;
    }
    NativeFunction f =
        switch (hashSpec) {
          case "sha1" -> NETTLE.sha1();
          case "sha256" -> NETTLE.sha256();
          default -> NETTLE.sha512();
        };
    return call(
        password,
        salt,
        bytes,
        (pass, s, out) -> {
          HeapInvocationBuffer args = new HeapInvocationBuffer(f.context());
          args.putLong(password.length);
          args.putAddress(pass);
          args.putInt(iterations);
          args.putLong(salt.length);
          args.putAddress(s);
          args.putLong(bytes);
          args.putAddress(out);
          INVOKER.invokeInt(f.context(), f.address(), args); // void
          return true;
        });
  }

  /** OpenSSL's {@code PKCS5_PBKDF2_HMAC}, or null without libcrypto or when it fails. */
  static byte[] openSsl(String hashSpec, byte[] password, byte[] salt, int iterations, int bytes) {
    if (NATIVE == null) {
      return null;
    }
    long md =
        switch (hashSpec) {
          case "sha1" -> NATIVE.sha1();
          case "sha256" -> NATIVE.sha256();
          default -> NATIVE.sha512();
        };
    return call(
        password,
        salt,
        bytes,
        (pass, s, out) -> {
          HeapInvocationBuffer args = new HeapInvocationBuffer(NATIVE.pbkdf2().context());
          args.putAddress(pass);
          args.putInt(password.length);
          args.putAddress(s);
          args.putInt(salt.length);
          args.putInt(iterations);
          args.putAddress(md);
          args.putInt(bytes);
          args.putAddress(out);
          return INVOKER.invokeInt(NATIVE.pbkdf2().context(), NATIVE.pbkdf2().address(), args) == 1;
        });
  }

  /** A native PBKDF2 call on native copies of the password and salt, into native output. */
  @FunctionalInterface
  private interface Call {
    boolean run(long password, long salt, long out);
  }

  /** Runs {@code call}; the password's and the result's native copies are zeroed, then freed. */
  private static byte[] call(byte[] password, byte[] salt, int bytes, Call call) {
    long pass = MEMORY.allocateMemory(Math.max(1, password.length), true);
    long s = MEMORY.allocateMemory(Math.max(1, salt.length), true);
    long out = MEMORY.allocateMemory(bytes, true);
    try {
      MEMORY.putByteArray(pass, password, 0, password.length);
      MEMORY.putByteArray(s, salt, 0, salt.length);
      if (!call.run(pass, s, out)) {
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
