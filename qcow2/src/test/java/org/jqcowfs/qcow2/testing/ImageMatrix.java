package org.jqcowfs.qcow2.testing;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/**
 * The differential test matrix: images QEMU 7.2 writes, built with qemu-img and qemu-io in a temp
 * dir, each with a seed so that failures reproduce. Every case is compared with QEMU's own answers.
 */
public final class ImageMatrix {
  private ImageMatrix() {}

  /**
   * One image of the matrix.
   *
   * @param name the case's name
   * @param image the image to open (top of its chain)
   * @param snapshots snapshot names whose views are also compared
   */
  public record Case(String name, Path image, List<String> snapshots) {
    @Override
    public String toString() {
      return name;
    }
  }

  /** A recipe that builds one case into a directory. */
  @FunctionalInterface
  public interface Recipe {
    Case build(Path dir) throws IOException;
  }

  /** A named recipe (for JUnit display names). */
  public record Named(String name, Recipe recipe) {
    @Override
    public String toString() {
      return name;
    }
  }

  /** Writes {@code bytes} of test data: runs of random bytes, text-like bytes and zeros. */
  public static Path sourceData(Path dir, String name, long bytes, long seed) throws IOException {
    Random r = new Random(seed);
    byte[] data = new byte[(int) bytes];
    int i = 0;
    while (i < data.length) {
      int run = Math.min(data.length - i, 512 * (1 + r.nextInt(256)));
      switch (r.nextInt(4)) {
        case 0 -> {
          byte[] rnd = new byte[run];
          r.nextBytes(rnd);
          System.arraycopy(rnd, 0, data, i, run);
        }
        case 1 -> {
          for (int k = 0; k < run; k++) {
            data[i + k] = (byte) ("the quick brown fox ".charAt((i + k) % 20) + (k / 4096));
          }
        }
        case 2 -> {} // zeros
        default -> {
          byte b = (byte) r.nextInt(256);
          java.util.Arrays.fill(data, i, i + run, b);
        }
      }
      i += run;
    }
    Path p = dir.resolve(name);
    Files.write(p, data);
    return p;
  }

  /** Random qemu-io writes: patterns, source-file data, zero writes, discards. */
  public static String[] randomWrites(
      Path dir, long size, int count, long seed, long granule, boolean zeros) throws IOException {
    Random r = new Random(seed);
    Path src = sourceData(dir, "writes-" + seed + ".bin", 4L << 20, seed);
    List<String> cmds = new ArrayList<>();
    for (int k = 0; k < count; k++) {
      long units = size / granule;
      long off = (r.nextLong() & Long.MAX_VALUE) % units * granule;
      long len = Math.min(size - off, granule * (1 + r.nextInt(48)));
      len = Math.min(len, 4L << 20);
      int kind = r.nextInt(zeros ? 5 : 3);
      cmds.add(
          switch (kind) {
            case 0 -> "write -q -P " + (1 + r.nextInt(254)) + " " + off + " " + len;
            case 1, 2 -> "write -q -s " + src + " " + off + " " + len;
            case 3 -> "write -q -z " + off + " " + len;
            default -> "discard -q " + off + " " + len;
          });
    }
    return cmds.toArray(String[]::new);
  }

  private static Case single(String name, Path image) {
    return new Case(name, image, List.of());
  }

  private static Case plain(Path dir, String name, String opts, long size, long granule, long seed)
      throws IOException {
    String file = name + ".qcow2";
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", opts, file, Long.toString(size));
    Qemu.io(dir, file, randomWrites(dir, size, 40, seed, granule, true));
    return single(name, dir.resolve(file));
  }

  private static Case compressed(
      Path dir, String name, String type, int clusterSize, long size, long seed, String extra)
      throws IOException {
    Path src = sourceData(dir, name + "-src.raw", size, seed);
    String file = name + ".qcow2";
    Qemu.img(
        dir,
        "convert",
        "-q",
        "-c",
        "-O",
        "qcow2",
        "-o",
        "compression_type=" + type + ",cluster_size=" + clusterSize + extra,
        src.toString(),
        file);
    Files.delete(src);
    // Partly overwrite: normal clusters and zero clusters between compressed ones.
    Qemu.io(dir, file, randomWrites(dir, size, 6, seed + 1, clusterSize, true));
    return single(name, dir.resolve(file));
  }

  /** Every case of the matrix. */
  public static List<Named> all() {
    List<Named> m = new ArrayList<>();
    long mb = 1 << 20;
    m.add(new Named("v2-64k", d -> plain(d, "v2-64k", "compat=0.10", 24 * mb, 4096, 1)));
    m.add(new Named("v3-512b", d -> plain(d, "v3-512b", "cluster_size=512", 3 * mb, 512, 2)));
    m.add(new Named("v3-4k", d -> plain(d, "v3-4k", "cluster_size=4096", 16 * mb, 1024, 3)));
    m.add(new Named("v3-64k", d -> plain(d, "v3-64k", "cluster_size=65536", 64 * mb, 4096, 4)));
    m.add(new Named("v3-2m", d -> plain(d, "v3-2m", "cluster_size=2M", 64 * mb, 65536, 5)));
    m.add(
        new Named(
            "v3-unaligned-size",
            d -> plain(d, "v3-unaligned-size", "cluster_size=65536", 33 * mb + 1536, 512, 6)));
    m.add(
        new Named(
            "extl2-64k",
            d -> plain(d, "extl2-64k", "extended_l2=on,cluster_size=64k", 32 * mb, 2048, 7)));
    m.add(
        new Named(
            "extl2-2m",
            d -> plain(d, "extl2-2m", "extended_l2=on,cluster_size=2M", 64 * mb, 65536, 8)));
    m.add(new Named("deflate-4k", d -> compressed(d, "deflate-4k", "zlib", 4096, 8 * mb, 9, "")));
    m.add(
        new Named(
            "deflate-64k", d -> compressed(d, "deflate-64k", "zlib", 65536, 16 * mb, 10, "")));
    m.add(
        new Named(
            "deflate-2m", d -> compressed(d, "deflate-2m", "zlib", 2 << 20, 16 * mb, 11, "")));
    m.add(new Named("zstd-4k", d -> compressed(d, "zstd-4k", "zstd", 4096, 8 * mb, 12, "")));
    m.add(new Named("zstd-64k", d -> compressed(d, "zstd-64k", "zstd", 65536, 16 * mb, 13, "")));
    m.add(new Named("zstd-2m", d -> compressed(d, "zstd-2m", "zstd", 2 << 20, 16 * mb, 14, "")));
    m.add(
        new Named(
            "zstd-extl2",
            d -> compressed(d, "zstd-extl2", "zstd", 65536, 16 * mb, 15, ",extended_l2=on")));
    m.add(new Named("zero-clusters", ImageMatrix::zeroClusters));
    m.add(new Named("data-file", d -> dataFile(d, false)));
    m.add(new Named("data-file-raw", d -> dataFile(d, true)));
    m.add(new Named("snapshots", ImageMatrix::snapshots));
    for (String prealloc : new String[] {"metadata", "falloc", "full"}) {
      m.add(
          new Named(
              "prealloc-" + prealloc,
              d ->
                  plain(
                      d,
                      "prealloc-" + prealloc,
                      "preallocation=" + prealloc,
                      16 * mb,
                      4096,
                      16 + prealloc.length())));
    }
    m.add(new Named("refcount1", d -> plain(d, "refcount1", "refcount_bits=1", 8 * mb, 4096, 21)));
    m.add(
        new Named("refcount64", d -> plain(d, "refcount64", "refcount_bits=64", 8 * mb, 4096, 22)));
    m.add(
        new Named(
            "lazy-refcounts",
            d -> plain(d, "lazy-refcounts", "lazy_refcounts=on", 8 * mb, 4096, 23)));
    m.add(new Named("bitmaps", ImageMatrix::bitmaps));
    m.add(new Named("chain-raw-deflate-zstd-extl2", ImageMatrix::chain3));
    m.add(new Named("chain-other-dir", ImageMatrix::chainOtherDir));
    m.add(new Named("chain-short-backing", ImageMatrix::chainShortBacking));
    return m;
  }

  private static Case zeroClusters(Path d) throws IOException {
    long mb = 1 << 20;
    Qemu.img(d, "create", "-q", "-f", "qcow2", "z.qcow2", Long.toString(16 * mb));
    Qemu.io(
        d,
        "z.qcow2",
        "write -q -P 7 0 8M",
        "write -q -z 1M 1M", // preallocated zero clusters (allocated, no unmap)
        "write -q -z -u 3M 1M", // plain zero clusters
        "discard -q 5M 512k",
        "write -q -z 10M 2M", // zero clusters where nothing was allocated
        "write -q -P 9 12M 64k");
    return single("zero-clusters", d.resolve("z.qcow2"));
  }

  private static Case dataFile(Path d, boolean raw) throws IOException {
    long mb = 1 << 20;
    String opts = "data_file=data.bin" + (raw ? ",data_file_raw=on" : "") + ",extended_l2=on";
    Qemu.img(d, "create", "-q", "-f", "qcow2", "-o", opts, "df.qcow2", Long.toString(16 * mb));
    Qemu.io(d, "df.qcow2", randomWrites(d, 16 * mb, 30, raw ? 31 : 32, 2048, !raw));
    return single(raw ? "data-file-raw" : "data-file", d.resolve("df.qcow2"));
  }

  private static Case snapshots(Path d) throws IOException {
    long mb = 1 << 20;
    Qemu.img(d, "create", "-q", "-f", "qcow2", "s.qcow2", Long.toString(16 * mb));
    Qemu.io(d, "s.qcow2", randomWrites(d, 16 * mb, 20, 41, 4096, true));
    Qemu.img(d, "snapshot", "-c", "first", "s.qcow2");
    Qemu.io(d, "s.qcow2", randomWrites(d, 16 * mb, 20, 42, 4096, true));
    Qemu.img(d, "snapshot", "-c", "second", "s.qcow2");
    Qemu.io(d, "s.qcow2", randomWrites(d, 16 * mb, 10, 43, 4096, true));
    return new Case("snapshots", d.resolve("s.qcow2"), List.of("first", "second"));
  }

  private static Case bitmaps(Path d) throws IOException {
    Case c = plain(d, "bitmaps", "cluster_size=65536", 8 << 20, 4096, 44);
    Qemu.img(d, "bitmap", "--add", c.image().toString(), "b0");
    Qemu.img(d, "bitmap", "--add", "-g", "1M", "--disable", c.image().toString(), "b1-disabled");
    Qemu.img(d, "bitmap", "--add", "-g", "512", c.image().toString(), "b2 fine");
    return c;
  }

  private static Case chain3(Path d) throws IOException {
    long mb = 1 << 20;
    Path base = sourceData(d, "base.raw", 24 * mb, 51);
    Path midSrc = sourceData(d, "mid-src.raw", 24 * mb, 52);
    Qemu.img(d, "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "mid.qcow2", "24M");
    // Compressed writes of fresh data into the middle layer.
    List<String> cmds = new ArrayList<>();
    for (long off = 0; off < 24 * mb; off += 3 * 65536) {
      cmds.add("write -q -c -s " + midSrc + " " + off + " 65536");
    }
    cmds.add("write -q -z 8M 1M");
    Qemu.io(d, "mid.qcow2", cmds.toArray(String[]::new));
    Qemu.img(
        d,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "extended_l2=on,compression_type=zstd",
        "-b",
        "mid.qcow2",
        "-F",
        "qcow2",
        "top.qcow2",
        "32M");
    List<String> top = new ArrayList<>(List.of(randomWrites(d, 32 * mb, 30, 53, 2048, true)));
    top.add("write -q -c -P 5 20M 64k");
    Qemu.io(d, "top.qcow2", top.toArray(String[]::new));
    Files.delete(midSrc);
    return single("chain-raw-deflate-zstd-extl2", d.resolve("top.qcow2"));
  }

  private static Case chainOtherDir(Path d) throws IOException {
    Path images = Files.createDirectories(d.resolve("images"));
    Path bases = Files.createDirectories(d.resolve("bases"));
    Qemu.img(bases, "create", "-q", "-f", "qcow2", "base.qcow2", "8M");
    Qemu.io(bases, "base.qcow2", randomWrites(bases, 8 << 20, 20, 61, 4096, false));
    Qemu.img(
        images,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "../bases/base.qcow2",
        "-F",
        "qcow2",
        "top.qcow2",
        "8M");
    Qemu.io(images, "top.qcow2", randomWrites(images, 8 << 20, 10, 62, 4096, true));
    return single("chain-other-dir", images.resolve("top.qcow2"));
  }

  private static Case chainShortBacking(Path d) throws IOException {
    Qemu.img(d, "create", "-q", "-f", "qcow2", "short.qcow2", "5M");
    Qemu.io(d, "short.qcow2", "write -q -P 3 0 5M");
    Qemu.img(
        d, "create", "-q", "-f", "qcow2", "-b", "short.qcow2", "-F", "qcow2", "long.qcow2", "12M");
    Qemu.io(d, "long.qcow2", "write -q -P 4 4M 64k", "write -q -P 6 6M 64k", "write -q -z 9M 64k");
    return single("chain-short-backing", d.resolve("long.qcow2"));
  }
}
