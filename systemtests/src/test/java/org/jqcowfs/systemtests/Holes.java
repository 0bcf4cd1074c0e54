package org.jqcowfs.systemtests;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.testing.Qemu;

/** Data segments: from a SEEK_DATA/SEEK_HOLE walk over a file, and from QEMU's map. */
final class Holes {
  private Holes() {}

  /** [start, end) pairs where a SEEK_DATA/SEEK_HOLE walk over {@code file} finds data. */
  static List<List<Long>> walk(Path file) throws IOException {
    List<List<Long>> got = new ArrayList<>();
    try (PosixStorage f = PosixStorage.open(file, HostFileOptions.DEFAULT)) {
      long size = f.length();
      long pos = 0;
      while (pos < size) {
        long data = f.seekData(pos);
        if (data < 0) {
          break;
        }
        long hole = f.seekHole(data);
        if (hole <= data) {
          throw new AssertionError("SEEK_HOLE(" + data + ") = " + hole);
        }
        got.add(List.of(data, hole));
        pos = hole;
      }
    }
    return got;
  }

  /**
   * The segments that read as non-zero in QEMU's view of {@code image}, where jqcowfs's SEEK_DATA
   * finds data: the merged runs that {@code qemu-img map --output=json} reports with "data": true
   * and "zero": false. (A metadata-preallocated image's host holes and a raw layer's holes are
   * "data": true, "zero": true, which QEMU's FUSE export takes for data.)
   */
  static List<List<Long>> qemu(Path image) throws IOException {
    return qemu(image, true);
  }

  /** The merged runs that {@code qemu-img map --output=json} reports with "data": true. */
  static List<List<Long>> qemuDataFlag(Path image) throws IOException {
    return qemu(image, false);
  }

  private static List<List<Long>> qemu(Path image, boolean zeroIsHole) throws IOException {
    JsonNode map = new ObjectMapper().readTree(Qemu.mapJson(image));
    List<List<Long>> want = new ArrayList<>();
    for (JsonNode e : map) {
      if (!e.get("data").asBoolean() || (zeroIsHole && e.get("zero").asBoolean())) {
        continue;
      }
      long s = e.get("start").asLong();
      long end = s + e.get("length").asLong();
      if (!want.isEmpty() && want.get(want.size() - 1).get(1) == s) {
        want.set(want.size() - 1, List.of(want.get(want.size() - 1).get(0), end));
      } else {
        want.add(List.of(s, end));
      }
    }
    return want;
  }

  /** Bytes in the segments. */
  static long bytes(List<List<Long>> segments) {
    return segments.stream().mapToLong(s -> s.get(1) - s.get(0)).sum();
  }
}
