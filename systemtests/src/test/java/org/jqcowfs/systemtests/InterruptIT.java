package org.jqcowfs.systemtests;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * A signal to a reader never turns a READ or an LSEEK of the flat file into EINTR, which a regular
 * file is not expected to give (QEMU's raw driver took the rest of a disk for data after one): the
 * daemon answers an interrupted request as usual, as libfuse filesystems do by default.
 */
class InterruptIT {
  private static final long MIB = 1 << 20;

  /** A compressed image with data and holes: 64 MiB, data in 6 separate runs. */
  static Path compressedImage(Path dir) throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "src.qcow2", "64M");
    List<String> writes = new ArrayList<>();
    for (int i = 0; i < 6; i++) {
      writes.add("write -q -P " + (i + 1) + " " + (i * 10 + 1) + "M " + (i + 1) + "M");
    }
    Qemu.io(dir, "src.qcow2", writes.toArray(String[]::new));
    Qemu.img(dir, "convert", "-q", "-c", "-O", "qcow2", "src.qcow2", "c.qcow2");
    return dir.resolve("c.qcow2");
  }

  /**
   * QEMU's raw driver on the flat file ({@code qemu-img map -f raw}, SEEK_DATA/SEEK_HOLE from an
   * io_uring-driven event loop, whose task work the kernel counts as a pending signal) finds the
   * image's data segments every time.
   */
  @Test
  void qemuImgMapOfTheFlatFileFindsTheSegmentsInEveryRun(@TempDir Path dir) throws Exception {
    Path image = compressedImage(dir);
    List<List<Long>> want = Holes.qemu(image);
    assertEquals(6, want.size(), "segments: " + want);
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    ObjectMapper json = new ObjectMapper();
    try (Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, image.toString())) {
      Path flat = m.file("c.raw");
      for (int run = 0; run < 100; run++) {
        Jqcowfs.Run r =
            Jqcowfs.exec(
                List.of("qemu-img", "map", "--output=json", "-f", "raw", "-U", flat.toString()));
        assertEquals(0, r.code(), r.err());
        List<List<Long>> got = new ArrayList<>();
        for (JsonNode e : json.readTree(r.out())) {
          if (e.get("data").asBoolean()) {
            long s = e.get("start").asLong();
            long end = s + e.get("length").asLong();
            if (!got.isEmpty() && got.get(got.size() - 1).get(1) == s) {
              got.set(got.size() - 1, List.of(got.get(got.size() - 1).get(0), end));
            } else {
              got.add(List.of(s, end));
            }
          }
        }
        assertEquals(want, got, "run " + run + " of qemu-img map -f raw");
      }
    }
  }

  /**
   * An LSEEK and a READ (O_DIRECT, so that the caller's own request reaches the daemon) that take
   * the daemon a second, its image on a disk that answers each read a second late ({@link
   * FaultyFs#delay}), while the caller gets SIGALRM (no SA_RESTART: an EINTR from the daemon would
   * reach the caller), are answered right. The LSEEK comes first: its walk reads the L2 table
   * without caching it, so the READ reads it again, and its compressed cluster.
   */
  @Test
  void aSignalledCallerGetsTheAnswerNotEintr(@TempDir Path dir) throws Exception {
    Path image = compressedImage(dir);
    Path slowMnt = Files.createDirectory(dir.resolve("slow"));
    Path mnt = Files.createDirectory(dir.resolve("mnt"));
    long held = 2 * MIB - 65536; // the last cluster of the first data run, [1M, 2M), pattern 1
    Path script = dir.resolve("signalled.py");
    Files.writeString(
        script,
        String.join(
            "\n",
            "import ctypes, mmap, os, signal, sys, time",
            "libc = ctypes.CDLL(None, use_errno=True)",
            "libc.pread.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_long]",
            "libc.pread.restype = ctypes.c_ssize_t",
            "libc.lseek.argtypes = [ctypes.c_int, ctypes.c_long, ctypes.c_int]",
            "libc.lseek.restype = ctypes.c_long",
            "seen = []",
            "signal.signal(signal.SIGALRM, lambda s, f: seen.append(s))",
            "signal.siginterrupt(signal.SIGALRM, True)",
            "fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)",
            "buf = mmap.mmap(-1, 65536)",
            "addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))",
            "off = int(sys.argv[2])",
            "t = time.monotonic()",
            "signal.setitimer(signal.ITIMER_REAL, 0.2)",
            "h = libc.lseek(fd, off, 4)",
            "e2 = ctypes.get_errno() if h < 0 else 0",
            "t2 = time.monotonic() - t",
            "t = time.monotonic()",
            "signal.setitimer(signal.ITIMER_REAL, 0.2)",
            "n = libc.pread(fd, addr, 65536, off)",
            "e1 = ctypes.get_errno() if n < 0 else 0",
            "t1 = time.monotonic() - t",
            "print(n, e1, h, e2, len(seen), buf[:2].hex(), round(t1, 2), round(t2, 2))",
            ""));
    try (FaultyFs disk = FaultyFs.mount(image, slowMnt);
        Jqcowfs.Mount m = Jqcowfs.Mount.of(mnt, disk.path().toString())) {
      disk.delay(1000);
      Jqcowfs.Run r =
          Jqcowfs.exec(
              List.of("python3", script.toString(), m.file("c.raw").toString(), "" + held));
      assertEquals(0, r.code(), r.err());
      String[] f = r.out().trim().split(" ");
      System.out.println("signalled reader: " + r.out().trim());
      assertEquals("2", f[4], "both calls were signalled: " + r.out());
      assertTrue(Double.parseDouble(f[6]) >= 0.9, "the READ was held: " + r.out());
      assertTrue(Double.parseDouble(f[7]) >= 0.9, "the LSEEK was held: " + r.out());
      assertEquals("65536 0", f[0] + " " + f[1], "READ answered, not EINTR (errno 4): " + r.out());
      assertEquals("0101", f[5], "READ's bytes");
      assertEquals(2 * MIB + " 0", f[2] + " " + f[3], "SEEK_HOLE answered: " + r.out());
    }
  }
}
