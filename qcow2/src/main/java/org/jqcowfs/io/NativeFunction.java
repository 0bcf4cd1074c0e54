package org.jqcowfs.io;

import com.kenai.jffi.CallContext;
import com.kenai.jffi.CallingConvention;
import com.kenai.jffi.Library;
import com.kenai.jffi.Type;

/**
 * A C function found in a loaded library, and its signature as jffi calls it: {@code
 * Invoker.invokeN*(context(), address(), ...)}. Used by {@link Posix}, {@code LibDeflate} and the
 * FUSE transport's {@code LibC}.
 *
 * @param address the function's address
 * @param context the return and parameter types, and whether errno is saved after each call
 */
public record NativeFunction(long address, CallContext context) {
  /**
   * Looks {@code name} up in {@code library}.
   *
   * @param saveErrno whether jffi saves errno after each call (read with {@code LastError})
   * @param fixedParameters how many of {@code parameters} precede a variadic C function's {@code
   *     ...}; {@code parameters.length} for one that is not variadic
   * @return the function, or null when the library has no such symbol
   */
  public static NativeFunction find(
      Library library,
      String name,
      boolean saveErrno,
      int fixedParameters,
      Type returns,
      Type... parameters) {
    long address = library.getSymbolAddress(name);
    if (address == 0) {
      return null;
    }
    return new NativeFunction(
        address,
        CallContext.getCallContext(
            returns, fixedParameters, parameters, CallingConvention.DEFAULT, saveErrno));
  }

  /** As {@link #libc(String, int, Type, Type...)} for a function that is not variadic. */
  public static NativeFunction libc(String name, Type returns, Type... parameters) {
    return libc(name, parameters.length, returns, parameters);
  }

  /**
   * A C library function, errno saved after each call; a missing one fails the caller's set-up.
   *
   * @throws UnsatisfiedLinkError naming the function if libc has no such symbol
   */
  public static NativeFunction libc(
      String name, int fixedParameters, Type returns, Type... parameters) {
    NativeFunction f = find(Library.getDefault(), name, true, fixedParameters, returns, parameters);
    if (f == null) {
      throw new UnsatisfiedLinkError("libc has no " + name + ": " + Library.getLastError());
    }
    return f;
  }
}
