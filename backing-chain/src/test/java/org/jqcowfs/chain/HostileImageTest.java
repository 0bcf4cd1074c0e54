package org.jqcowfs.chain;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import org.jqcowfs.image.DamagedRangeException;
import org.jqcowfs.image.Extent;
import org.jqcowfs.image.ImageFormatException;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import org.jqcowfs.qcow2.testing.Poke;
import org.jqcowfs.qcow2.testing.Qemu;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import org.opentest4j.AssertionFailedError;

/**
 * Hostile images: valid images made by qemu-img and qemu-io, then poked. Each is refused at open
 * with a message naming the field and the value, or opens and gives an error for the affected range
 * only (the rest reads right), or reads correctly. Each runs under a time limit.
 */
public class HostileImageTest {
  /** What jqcowfs makes of a case. */
  public enum Outcome {
    REFUSED,
    EIO,
    OK,
    /** The snapshot table is damaged: the active image reads right, a snapshot is refused. */
    SNAPSHOTS_IGNORED,
    /**
     * A persistent dirty bitmap is damaged: the image reads right (reads never use bitmaps), a
     * writable open is refused before anything is written.
     */
    BITMAPS_IGNORED
  }

  @FunctionalInterface
  public interface Build {
    Path build(Path dir) throws Exception;
  }

  /** A hostile image: how to build it, and what jqcowfs must make of it. */
  public record Case(String name, Outcome outcome, Build build, String... expect) {
    @Override
    public String toString() {
      return name;
    }
  }

  private static final AtomicInteger[] TALLY = {
    new AtomicInteger(),
    new AtomicInteger(),
    new AtomicInteger(),
    new AtomicInteger(),
    new AtomicInteger()
  };
  private static final AtomicInteger HANGS = new AtomicInteger();
  private static final AtomicInteger CRASHES = new AtomicInteger();

  /** Reads that fell outside the file they read, seen by {@link ObservedStorage}. */
  private static final List<String> OUTSIDE = new CopyOnWriteArrayList<>();

  /** Every file of every chain opened here, observed for reads outside the file. */
  private static final ChainOptions OBSERVED =
      ChainOptions.DEFAULT.withStorage(ObservedStorage.opener(OUTSIDE));

  // Header field offsets (spec section 1).
  static final int VERSION = 4;
  static final int BACKING_OFFSET = 8;
  static final int BACKING_SIZE = 16;
  static final int CLUSTER_BITS = 20;
  static final int SIZE = 24;
  static final int CRYPT = 32;
  static final int L1_SIZE = 36;
  static final int L1_OFFSET = 40;
  static final int REFTABLE_OFFSET = 48;
  static final int REFTABLE_CLUSTERS = 56;
  static final int NB_SNAPSHOTS = 60;
  static final int SNAPSHOTS_OFFSET = 64;
  static final int INCOMPAT = 72;
  static final int REFCOUNT_ORDER = 96;
  static final int HEADER_LENGTH = 100;

  /** An 8 MiB image, 4 KiB clusters (one L2 table maps 2 MiB): data at 0 (0x01) and 4M (0x02). */
  static Path base(Path dir, String opts) throws IOException {
    String o = opts.contains("cluster_size") ? opts.substring(1) : "cluster_size=4096" + opts;
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", o, "h.qcow2", "8M");
    Qemu.io(dir, "h.qcow2", "write -q -P 1 0 64k", "write -q -P 2 4M 64k");
    return dir.resolve("h.qcow2");
  }

  static Path base(Path dir) throws IOException {
    return base(dir, "");
  }

  static Path poke(Path f, long off, byte[] bytes) throws IOException {
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "rw")) {
      raf.seek(off);
      raf.write(bytes);
    }
    return f;
  }

  static void pokeInt(Path f, long off, int v) throws IOException {
    poke(f, off, ByteBuffer.allocate(4).putInt(v).array());
  }

  static void pokeLong(Path f, long off, long v) throws IOException {
    poke(f, off, ByteBuffer.allocate(8).putLong(v).array());
  }

  static long peekLong(Path f, long off) throws IOException {
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "r")) {
      raf.seek(off);
      return raf.readLong();
    }
  }

  /** Host offset of the L2 table of L1[0]. */
  static long l2Of(Path f, int l1Index) throws IOException {
    return peekLong(f, peekLong(f, L1_OFFSET) + 8L * l1Index) & 0x00fffffffffffe00L;
  }

  /** Offset of the end-of-extensions marker (type 0). */
  static long extensionEnd(Path f) throws IOException {
    return findExtension(f, 0);
  }

  /** Appends a header extension at the end of the extension area. */
  static Path withExtension(Path f, int type, int declaredLen, byte[] data) throws IOException {
    long pos = extensionEnd(f);
    ByteBuffer b = ByteBuffer.allocate(8 + ((data.length + 7) & ~7) + 8);
    b.putInt(type).putInt(declaredLen).put(data);
    poke(f, pos, b.array());
    return f;
  }

  /** Every case (also the corpus of the CLI's check comparison). */
  public static List<Case> cases() {
    List<Case> c = new ArrayList<>();
    // --- header fields ---
    c.add(
        refused(
            "bad magic: not probed as raw",
            d -> set(base(d), 0, 0x51464900),
            "not a qcow2 image",
            "magic 0x51464900",
            "-f raw"));
    c.add(
        refused(
            "empty file",
            d -> Files.write(d.resolve("h.qcow2"), new byte[0]),
            "not a qcow2 image",
            "the file is empty",
            "-f raw"));
    c.add(
        refused(
            "size near 2^63: the L1 table it needs passes QEMU's limit",
            d -> setLong(base(d), SIZE, Long.MAX_VALUE & ~511L),
            "size 9223372036854775296",
            "too large"));
    c.add(
        refused(
            "size 2^50 with 4 KiB clusters: 2^21 L2 tables' worth passes the L1 limit",
            d -> setLong(base(d), SIZE, 1L << 50),
            "size 1125899906842624",
            "too large"));
    c.add(refused("version 1", d -> set(base(d), VERSION, 1), "version 1"));
    c.add(refused("version 4", d -> set(base(d), VERSION, 4), "version 4"));
    c.add(refused("cluster_bits 8", d -> set(base(d), CLUSTER_BITS, 8), "cluster_bits 8"));
    c.add(refused("cluster_bits 22", d -> set(base(d), CLUSTER_BITS, 22), "cluster_bits 22"));
    c.add(refused("cluster_bits -1", d -> set(base(d), CLUSTER_BITS, -1), "cluster_bits -1"));
    c.add(refused("crypt_method AES", d -> set(base(d), CRYPT, 1), "crypt_method 1", "AES"));
    c.add(refused("crypt_method LUKS", d -> set(base(d), CRYPT, 2), "crypt_method 2", "LUKS"));
    c.add(refused("crypt_method 7", d -> set(base(d), CRYPT, 7), "crypt_method 7"));
    c.add(refused("l1_size huge", d -> set(base(d), L1_SIZE, 0x7fffffff), "l1_size 2147483647"));
    c.add(refused("l1_size too small", d -> set(base(d), L1_SIZE, 1), "l1_size 1", "too small"));
    c.add(
        refused(
            "l1_table_offset unaligned",
            d -> setLong(base(d), L1_OFFSET, peekLong(base(d), L1_OFFSET) + 8),
            "l1_table_offset"));
    c.add(
        refused(
            "l1_table_offset past EOF",
            d -> setLong(base(d), L1_OFFSET, 1L << 40),
            "l1_table_offset 0x10000000000"));
    c.add(
        refused(
            "refcount_table_clusters huge",
            d -> set(base(d), REFTABLE_CLUSTERS, 0x10000000),
            "refcount_table_clusters 268435456"));
    c.add(
        refused(
            "refcount_table_offset past EOF",
            d -> setLong(base(d), REFTABLE_OFFSET, 1L << 40),
            "refcount_table_offset 0x10000000000"));
    c.add(
        refused(
            "nb_snapshots over cap",
            d -> set(base(d), NB_SNAPSHOTS, 100000),
            "nb_snapshots 100000"));
    c.add(
        refused(
            "snapshots_offset past EOF",
            d -> setLong(set(base(d), NB_SNAPSHOTS, 1), SNAPSHOTS_OFFSET, 1L << 40),
            "snapshots_offset 0x10000000000"));
    c.add(refused("unknown incompatible bit 5", d -> setLong(base(d), INCOMPAT, 1L << 5), "bit 5"));
    c.add(refused("incompatible bit 63", d -> setLong(base(d), INCOMPAT, 1L << 63), "bit 63"));
    c.add(refused("header_length 100", d -> set(base(d), HEADER_LENGTH, 100), "header_length 100"));
    c.add(
        refused(
            "header_length huge",
            d -> set(base(d), HEADER_LENGTH, 1 << 30),
            "header_length 1073741824"));
    c.add(refused("refcount_order 7", d -> set(base(d), REFCOUNT_ORDER, 7), "refcount_order 7"));
    c.add(
        refused(
            "compression_type 2",
            d -> poke(setLong(base(d), INCOMPAT, 1L << 3), 104, new byte[] {2}),
            "compression_type 2"));
    c.add(
        refused(
            "compression_type without bit",
            d -> poke(base(d), 104, new byte[] {1}),
            "compression_type 1"));
    c.add(
        refused("size negative", d -> setLong(base(d), SIZE, -4096), "size 18446744073709547520"));
    c.add(
        refused(
            "backing_file_size over 1023",
            d -> set(setLong(base(d), BACKING_OFFSET, 0x200), BACKING_SIZE, 5000),
            "backing_file_size 5000"));
    c.add(
        refused(
            "backing_file_offset outside first cluster",
            d -> set(setLong(base(d), BACKING_OFFSET, 0xff0), BACKING_SIZE, 100),
            "backing_file_offset 0xff0"));
    // --- header extensions ---
    c.add(
        refused(
            "extension length huge",
            d -> withExtension(base(d), 0x12345678, 0xffffff00, new byte[0]),
            "0x12345678",
            "length 4294967040"));
    c.add(
        refused(
            "backing format extension too long",
            d -> withExtension(base(d), 0xe2792aca, 100, new byte[100]),
            "backing format",
            "length 100"));
    c.add(
        refused(
            "backing format not printable",
            d -> withExtension(base(d), 0xe2792aca, 5, new byte[] {'q', 'c', 0, 'w', '2'}),
            "backing format",
            "0x0"));
    c.add(
        refused(
            "crypto extension in plain image",
            d -> withExtension(base(d), 0x0537be77, 16, new byte[16]),
            "encryption header extension"));
    c.add(
        refused(
            "bitmaps extension bad length",
            d -> withExtension(base(d), 0x23852875, 8, new byte[8]),
            "bitmaps extension",
            "length 8"));
    c.add(
        refused(
            "data file bit without name",
            d -> setLong(base(d), INCOMPAT, 1L << 2),
            "incompatible bit 2"));
    c.add(
        refused(
            "extended L2 with 4 KiB clusters",
            d -> setLong(base(d), INCOMPAT, 1L << 4),
            "cluster_bits 12"));
    c.add(
        refused(
            "data file json name",
            d -> {
              Path f = withDataFile(d);
              byte[] name = "json:{\"driver\":\"file\"}".getBytes(StandardCharsets.UTF_8);
              long ext = findExtension(f, 0x44415441);
              pokeInt(f, ext + 4, name.length);
              poke(f, ext + 8, Arrays.copyOf(name, (name.length + 7) & ~7));
              pokeLong(f, ext + 8 + ((name.length + 7) & ~7), 0);
              return f;
            },
            "json:"));
    // --- L1 / L2 / compressed (EIO for the bad range only) ---
    c.add(
        eio(
            "L1 entry past EOF",
            d -> setLong(base(d), l1Pos(base(d), 0), 1L << 40),
            "L1[0]",
            "past the end"));
    c.add(
        eio(
            "L1 entry unaligned",
            d -> setLong(base(d), l1Pos(base(d), 0), l2Of(base(d), 0) + 512),
            "L1[0]",
            "unaligned"));
    c.add(
        eio(
            "L1 entry reserved bits",
            d -> setLong(base(d), l1Pos(base(d), 0), l2Of(base(d), 0) | 1L << 60),
            "L1[0]",
            "reserved"));
    c.add(
        eio(
            "L2 entry reserved bits",
            d -> setLong(base(d), l2Of(base(d), 0), peekLong(base(d), l2Of(base(d), 0)) | 2),
            "L1[0]/L2[0]",
            "invalid"));
    c.add(
        eio(
            "L2 entry past EOF",
            d -> setLong(base(d), l2Of(base(d), 0), (1L << 40) | 1L << 63),
            "L1[0]/L2[0]",
            "past the end"));
    c.add(
        eio(
            "L2 entry unaligned",
            d -> setLong(base(d), l2Of(base(d), 0), peekLong(base(d), l2Of(base(d), 0)) + 512),
            "L1[0]/L2[0]",
            "unaligned"));
    c.add(
        eio(
            "compressed descriptor past EOF",
            d -> setLong(base(d), l2Of(base(d), 0), (1L << 62) | (1L << 40)),
            "L1[0]/L2[0]",
            "past the end"));
    c.add(
        eio(
            "compressed garbage payload",
            d -> {
              Path f = base(d);
              long data = peekLong(f, l2Of(f, 0)) & 0x00fffffffffffe00L;
              poke(f, data, new byte[] {(byte) 0xff, (byte) 0xff, (byte) 0xff, (byte) 0xff});
              return setLong(f, l2Of(f, 0), (1L << 62) | data);
            },
            "L1[0]/L2[0]",
            "zlib"));
    c.add(
        eio(
            "extended L2 alloc and zero",
            d -> {
              Path f = hostileExtl2(d);
              long l2 = l2Of(f, 0);
              return setLong(f, l2 + 8, peekLong(f, l2 + 8) | (1L << 32));
            },
            "L1[0]/L2[0]",
            "invalid"));
    c.add(
        eio(
            "zero flag in v2 image",
            d -> {
              Path f = base(d, ",compat=0.10");
              return setLong(f, l2Of(f, 0), peekLong(f, l2Of(f, 0)) | 1);
            },
            "L1[0]/L2[0]",
            "v2 zero flag"));
    c.add(
        eio(
            "compressed cluster with subcluster bitmap",
            d -> {
              Path f = hostileExtl2(d);
              long l2 = l2Of(f, 0);
              setLong(f, l2, (1L << 62) | (peekLong(f, l2) & 0x00fffffffffffe00L));
              return setLong(f, l2 + 8, 1);
            },
            "L1[0]/L2[0]",
            "bitmap"));
    // --- snapshots ---
    c.add(
        snapshotsIgnored(
            "snapshot extra_data_size huge",
            d -> {
              Path f = base(d);
              Qemu.img(d, "snapshot", "-c", "s1", f.toString());
              return set(f, peekLong(f, SNAPSHOTS_OFFSET) + 36, 1 << 30);
            },
            "snapshot 0",
            "extra_data_size 1073741824"));
    c.add(
        snapshotsIgnored(
            "snapshot L1 past EOF",
            d -> {
              Path f = base(d);
              Qemu.img(d, "snapshot", "-c", "s1", f.toString());
              return setLong(f, peekLong(f, SNAPSHOTS_OFFSET), 1L << 40);
            },
            "snapshot 0",
            "0x10000000000"));
    // --- backing chains ---
    c.add(refused("self-backed", d -> backedBy(d, "h.qcow2", base(d), "qcow2"), "cycle"));
    c.add(
        refused(
            "backing cycle",
            d -> {
              Qemu.img(d, "create", "-q", "-f", "qcow2", "a.qcow2", "1M");
              Qemu.img(
                  d, "create", "-q", "-f", "qcow2", "-b", "a.qcow2", "-F", "qcow2", "b.qcow2",
                  "1M");
              Qemu.img(d, "rebase", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "a.qcow2");
              return d.resolve("b.qcow2");
            },
            "cycle",
            "a.qcow2"));
    c.add(
        refused(
            "missing backing",
            d -> backedBy(d, "nope.qcow2", newImage(d), "qcow2"),
            "nope.qcow2",
            "does not exist"));
    c.add(
        refused(
            "backing is a directory",
            d -> {
              Files.createDirectory(d.resolve("dir"));
              return backedBy(d, "dir", newImage(d), "raw");
            },
            "dir",
            "directory"));
    c.add(
        refused(
            "backing is a FIFO",
            d -> {
              Qemu.run(d, "mkfifo", "fifo");
              return backedBy(d, "fifo", newImage(d), "raw");
            },
            "fifo",
            "not a regular file"));
    c.add(
        refused(
            "json backing name",
            d -> backedBy(d, "json:{\"file.filename\":\"/etc/passwd\"}", newImage(d), "raw"),
            "json:"));
    c.add(
        refused(
            "protocol backing name",
            d -> backedBy(d, "nbd://example.com/x", newImage(d), "raw"),
            "nbd://example.com/x",
            "protocol"));
    c.add(
        refused(
            "unknown backing format",
            d -> backedBy(d, "b.vmdk", newImage(d), "vmdk"),
            "backing format 'vmdk'"));
    c.add(
        refused(
            "chain deeper than the cap",
            d -> {
              Qemu.img(d, "create", "-q", "-f", "qcow2", "l0.qcow2", "1M");
              for (int i = 1; i <= 70; i++) {
                Qemu.img(
                    d,
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    "l" + (i - 1) + ".qcow2",
                    "-F",
                    "qcow2",
                    "l" + i + ".qcow2",
                    "1M");
              }
              return d.resolve("l70.qcow2");
            },
            "deeper than the cap of 64"));
    c.add(
        ok(
            "backing without format probed as raw",
            d -> {
              Files.write(d.resolve("b.raw"), new byte[1 << 20]);
              return backedBy(d, "b.raw", newImage(d), null);
            }));
    c.add(ok("dirty and corrupt bits open read-only", d -> setLong(base(d), INCOMPAT, 3)));
    // --- added: extensions, tables, compressed payloads, data files ---
    c.add(
        refused(
            "extension crossing the first cluster by 8 bytes",
            d -> {
              Path f = base(d);
              return withExtension(f, 0x12345678, (int) (4096 - extensionEnd(f)), new byte[0]);
            },
            "crosses the end of the first cluster"));
    c.add(
        refused(
            "feature name unterminated, unknown bit set",
            d -> {
              byte[] entry = new byte[48];
              entry[1] = 5;
              Arrays.fill(entry, 2, 48, (byte) 'A');
              return setLong(withExtension(base(d), 0x6803f857, 48, entry), INCOMPAT, 1L << 5);
            },
            "bit 5",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    c.add(
        refused(
            "backing format extension twice",
            d -> {
              byte[] fmt = "raw".getBytes(StandardCharsets.US_ASCII);
              return withExtension(withExtension(base(d), 0xe2792aca, 3, fmt), 0xe2792aca, 3, fmt);
            },
            "appears twice"));
    c.add(
        refused(
            "bitmaps extension with no bitmaps",
            d -> setLong(withExtension(base(d), 0x23852875, 24, new byte[24]), 88, 1),
            "nb_bitmaps 0"));
    c.add(
        ok(
            "stale bitmaps extension (autoclear bit clear): ignored as QEMU ignores it",
            d -> withExtension(base(d), 0x23852875, 24, new byte[24])));
    c.add(
        refused(
            "L1 table running past EOF",
            d -> set(base(d), L1_SIZE, 100_000),
            "l1_table_offset",
            "800000 bytes"));
    c.add(
        refused(
            "snapshots_offset unaligned",
            d -> setLong(set(base(d), NB_SNAPSHOTS, 1), SNAPSHOTS_OFFSET, 0x1008),
            "snapshots_offset 0x1008"));
    c.add(
        snapshotsIgnored(
            "snapshot l1_size huge",
            d -> {
              Path f = base(d);
              Qemu.img(d, "snapshot", "-c", "s1", f.toString());
              return set(f, peekLong(f, SNAPSHOTS_OFFSET) + 8, 0x10000000);
            },
            "snapshot 0",
            "l1_size 268435456"));
    c.add(
        ok(
            "refcount table entry past EOF: reading needs no refcounts",
            d -> {
              Path f = base(d);
              return setLong(f, peekLong(f, REFTABLE_OFFSET), 1L << 40);
            }));
    c.add(
        eio(
            "L2 host offset at 2^56",
            d -> setLong(base(d), l2Of(base(d), 0), (1L << 63) | (1L << 56)),
            "L1[0]/L2[0]"));
    c.add(
        ok(
            "deflate bomb: 64 MiB stream in a 64 KiB cluster stops at the cluster",
            d -> {
              Path f = base(d, ",cluster_size=65536");
              byte[] bomb = deflateRaw(new byte[64 << 20], (byte) 3);
              long host = (Files.size(f) + 65535) & ~65535L;
              poke(f, host, bomb);
              long sectors = (bomb.length + 511) / 512 - 1;
              return setLong(f, l2Of(f, 0), (1L << 62) | (sectors << 54) | host);
            }));
    c.add(
        eio(
            "zstd truncated payload: the frame cut to its first sector",
            d -> {
              byte[] noise = new byte[8 << 20];
              java.util.Random r = new java.util.Random(7);
              for (int i = 0; i < 65536; i++) {
                noise[i] = (byte) r.nextInt(16);
              }
              Arrays.fill(noise, 4 << 20, (4 << 20) + 65536, (byte) 2);
              Files.write(d.resolve("n.raw"), noise);
              Qemu.img(
                  d,
                  "convert",
                  "-c",
                  "-f",
                  "raw",
                  "-O",
                  "qcow2",
                  "-o",
                  "compression_type=zstd,cluster_size=65536",
                  "n.raw",
                  "h.qcow2");
              Path f = d.resolve("h.qcow2");
              long entry = peekLong(f, l2Of(f, 0));
              return setLong(f, l2Of(f, 0), entry & ~(0xffL << 54));
            },
            "L1[0]/L2[0]",
            "zstd"));
    c.add(
        refused(
            "data file missing",
            d -> {
              Path f = withDataFile(d);
              Files.delete(d.resolve("dat"));
              return f;
            },
            "external data file 'dat'",
            "no such file"));
    c.add(
        refused(
            "data file is a directory",
            d -> {
              Path f = withDataFile(d);
              Files.delete(d.resolve("dat"));
              Files.createDirectory(d.resolve("dat"));
              return f;
            },
            "external data file 'dat'",
            "is a directory"));
    c.add(
        refused(
            "qcow2 backing without format: not probed into qcow2",
            d -> {
              Path b = base(d);
              Files.move(b, d.resolve("b.qcow2"));
              return backedBy(d, "b.qcow2", newImage(d, "8M"), null);
            },
            "backing file 'b.qcow2'",
            "no stored format",
            "qemu-img rebase -u -F qcow2 -b b.qcow2",
            "--probe-backing-format"));
    bitmapCases(c);
    return c;
  }

  /**
   * {@link #base} with bitmaps b0 (4 KiB granularity, a data cluster of dirty bits) and b1 (512 B);
   * the bytes written keep base()'s data.
   */
  static Path withBitmaps(Path d) throws IOException {
    Path f = base(d);
    Qemu.img(d, "bitmap", "--add", f.toString(), "b0");
    Qemu.img(d, "bitmap", "--add", "-g", "512", f.toString(), "b1");
    Qemu.io(d, f.toString(), "write -q -P 1 0 4k");
    return f;
  }

  /** Damaged bitmap directories and tables: QEMU refuses to open the first six at all. */
  private static void bitmapCases(List<Case> c) {
    c.add(bitmaps("bitmap granularity bits 8", 17, 8, "doesn't satisfy the constraints"));
    c.add(bitmaps("bitmap reserved flag", 15, 6, "doesn't satisfy the constraints"));
    c.add(bitmaps("bitmap type 2", 16, 2, "doesn't satisfy the constraints"));
    c.add(bitmaps("bitmap table unaligned", 7, 8, "doesn't satisfy the constraints"));
    c.add(bitmaps("bitmap name past the directory", 18, 0x7f, "Broken bitmap directory"));
    c.add(
        bitmapEntry(
            "bitmap table entry with reserved bits",
            f -> 0x0100000000000200L,
            "bitmap 'b0': table entry 0 is invalid"));
    c.add(
        bitmapEntry(
            "bitmap data cluster past the end",
            f -> 0x10000000L,
            "bitmap 'b0': table entry 0 at 0x10000000 passes the end"));
    c.add(
        bitmapEntry(
            "bitmap data cluster on the L1 table",
            f -> peekLong(f, L1_OFFSET),
            "overlaps the active L1 table"));
  }

  /** The byte at {@code at} of b0's directory entry set to {@code value}. */
  private static Case bitmaps(String name, int at, int value, String expect) {
    return new Case(
        name,
        Outcome.BITMAPS_IGNORED,
        d -> {
          Path f = withBitmaps(d);
          return poke(f, new Poke(f).bitmapEntry(0) + at, new byte[] {(byte) value});
        },
        expect);
  }

  /** The first entry of b0's bitmap table set to what {@code entry} gives. */
  private static Case bitmapEntry(String name, TableEntry entry, String expect) {
    return new Case(
        name,
        Outcome.BITMAPS_IGNORED,
        d -> {
          Path f = withBitmaps(d);
          return setLong(f, peekLong(f, new Poke(f).bitmapEntry(0)), entry.of(f));
        },
        expect);
  }

  @FunctionalInterface
  private interface TableEntry {
    long of(Path image) throws IOException;
  }

  /** Raw deflate (no zlib header, as qcow2 stores it) of {@code data} filled with {@code fill}. */
  static byte[] deflateRaw(byte[] data, byte fill) {
    Arrays.fill(data, fill);
    java.util.zip.Deflater z = new java.util.zip.Deflater(9, true);
    z.setInput(data);
    z.finish();
    java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
    byte[] buf = new byte[65536];
    while (!z.finished()) {
      out.write(buf, 0, z.deflate(buf));
    }
    z.end();
    return out.toByteArray();
  }

  private static Path hostileExtl2(Path d) throws IOException {
    Qemu.img(
        d, "create", "-q", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=64k", "h.qcow2", "1G");
    // 64 KiB clusters with 16-byte entries: one L2 table maps 256 MiB, so 512M is L1[2].
    Qemu.io(d, "h.qcow2", "write -q -P 1 0 64k", "write -q -P 2 512M 64k");
    return d.resolve("h.qcow2");
  }

  private static long findExtension(Path f, int type) throws IOException {
    try (RandomAccessFile raf = new RandomAccessFile(f.toFile(), "r")) {
      raf.seek(HEADER_LENGTH);
      long pos = raf.readInt();
      while (true) {
        raf.seek(pos);
        int t = raf.readInt();
        int len = raf.readInt();
        if (t == type) {
          return pos;
        }
        if (t == 0) {
          throw new IOException("no header extension " + Integer.toHexString(type));
        }
        pos += 8 + ((len + 7) & ~7);
      }
    }
  }

  /** A 1 MiB image x.qcow2 whose guest data lives in the external data file "dat". */
  static Path withDataFile(Path d) throws IOException {
    Qemu.img(d, "create", "-q", "-f", "qcow2", "-o", "data_file=dat", "x.qcow2", "1M");
    return d.resolve("x.qcow2");
  }

  static Path newImage(Path d) throws IOException {
    return newImage(d, "1M");
  }

  static Path newImage(Path d, String size) throws IOException {
    Qemu.img(d, "create", "-q", "-f", "qcow2", "n.qcow2", size);
    return d.resolve("n.qcow2");
  }

  /** Stores a backing name (and format, unless null) into {@code f} without checking it. */
  static Path backedBy(Path d, String name, Path f, String format) throws IOException {
    List<String> cmd =
        new ArrayList<>(List.of("qemu-img", "rebase", "-u", "-f", "qcow2", "-b", name));
    if (format != null) {
      cmd.addAll(List.of("-F", format));
    }
    cmd.add(f.toString());
    try {
      Qemu.run(d, cmd);
    } catch (IOException e) {
      // qemu-img refuses some names itself; write the name directly then.
      byte[] b = name.getBytes(StandardCharsets.UTF_8);
      poke(f, 0xe00, b);
      setLong(f, BACKING_OFFSET, 0xe00);
      set(f, BACKING_SIZE, b.length);
    }
    return f;
  }

  static long l1Pos(Path f, int index) throws IOException {
    return peekLong(f, L1_OFFSET) + 8L * index;
  }

  static Path set(Path f, long off, int v) throws IOException {
    pokeInt(f, off, v);
    return f;
  }

  static Path setLong(Path f, long off, long v) throws IOException {
    pokeLong(f, off, v);
    return f;
  }

  static Case refused(String name, Build b, String... expect) {
    return new Case(name, Outcome.REFUSED, b, expect);
  }

  static Case eio(String name, Build b, String... expect) {
    return new Case(name, Outcome.EIO, b, expect);
  }

  static Case snapshotsIgnored(String name, Build b, String... expect) {
    return new Case(name, Outcome.SNAPSHOTS_IGNORED, b, expect);
  }

  static Case ok(String name, Build b) {
    return new Case(name, Outcome.OK, b);
  }

  @ParameterizedTest(name = "{0}")
  @MethodSource("cases")
  void hostile(Case c, @TempDir Path dir) throws Exception {
    Path image = c.build().build(dir);
    OUTSIDE.clear();
    try {
      assertTimeoutPreemptively(Duration.ofSeconds(20), () -> check(c, image, dir));
    } catch (AssertionFailedError e) {
      if (String.valueOf(e.getMessage()).contains("timed out")) {
        HANGS.incrementAndGet();
      } else if (unexpected(e.getCause())) {
        CRASHES.incrementAndGet();
      }
      throw e;
    } catch (RuntimeException | Error e) {
      CRASHES.incrementAndGet();
      throw e;
    } finally {
      // Checked even when the case failed otherwise: a read outside the file is the worse finding.
      assertEquals(List.of(), OUTSIDE, "reads outside the file");
    }
    TALLY[c.outcome().ordinal()].incrementAndGet();
  }

  /** A crash: the parser threw something other than an I/O error (or ran out of memory). */
  private static boolean unexpected(Throwable t) {
    return t != null && !(t instanceof IOException) && !(t instanceof AssertionError);
  }

  private static void check(Case c, Path image, Path dir) throws Exception {
    switch (c.outcome()) {
      case REFUSED -> {
        IOException e =
            assertThrows(IOException.class, () -> ChainOpener.open(image, OBSERVED).close());
        assertMentions(e, image, c.expect());
      }
      case EIO -> {
        try (BackingChain chain = ChainOpener.open(image, OBSERVED)) {
          IOException e =
              assertThrows(
                  ImageFormatException.class, () -> chain.read(ByteBuffer.allocate(65536), 0));
          assertMentions(e, image, c.expect());
          assertTrue(e.getMessage().contains("guest offset 0x"), "names the guest offset: " + e);
          // The good range still reads, with the data qemu-io wrote there.
          long good = chain.size() > (512L << 20) ? 512L << 20 : 4L << 20;
          ByteBuffer b = ByteBuffer.allocate(65536);
          chain.read(b, good);
          byte[] want = new byte[65536];
          Arrays.fill(want, (byte) 2);
          assertArrayEquals(want, b.array(), "the unaffected range must still read right");
          DamagedRangeException d = assertInstanceOf(DamagedRangeException.class, e);
          assertTrue(d.covers(0), "the damaged range holds the bad read: " + d.rangeText());
          assertTrue(d.end() <= good || d.guestOffset() > good, "the good range is not damaged");
          if (!c.name().contains("payload")) { // only decompression finds a bad payload
            assertThrows(
                IOException.class, () -> chain.seekData(0), "block status of the bad range");
            // Walks over the disk skip the damaged range and go on.
            List<DamagedRangeException> seen = new ArrayList<>();
            long data = chain.dataBytes(seen::add);
            assertEquals(1, seen.size(), "one damaged range");
            assertTrue(data >= 65536, "the good data is counted: " + data);
            List<Extent> map = chain.map(0, chain.size(), x -> {});
            assertEquals(seen.get(0).end(), map.get(0).start(), "the map goes on after it");
            assertEquals(chain.size(), map.get(map.size() - 1).end());
            long next = chain.seekData(seen.get(0).end());
            assertTrue(next >= seen.get(0).end() && next <= good, "SEEK_DATA past it: " + next);
          }
        }
      }
      case SNAPSHOTS_IGNORED -> {
        try (BackingChain chain = ChainOpener.open(image, OBSERVED)) {
          Qcow2Image top = (Qcow2Image) chain.top();
          assertEquals(List.of(), top.snapshots());
          assertTrue(top.snapshotTableDamage().isPresent(), "the damage is kept for the user");
          assertMentions(new IOException(top.snapshotTableDamage().get()), image, c.expect());
          assertArrayEquals(
              baseBytes(chain.size()), readAll(chain), "the active image reads right");
        }
        IOException e =
            assertThrows(
                IOException.class,
                () -> ChainOpener.open(image, OBSERVED.withSnapshot("s1")).close());
        assertMentions(e, image, c.expect());
      }
      case BITMAPS_IGNORED -> {
        byte[] before = Files.readAllBytes(image);
        try (BackingChain chain = ChainOpener.open(image, OBSERVED)) {
          assertArrayEquals(baseBytes(chain.size()), readAll(chain), "the image reads right");
        }
        IOException e =
            assertThrows(
                IOException.class,
                () ->
                    Qcow2Image.open(
                            image,
                            Qcow2Options.DEFAULT.withHostIo(
                                HostFileOptions.DEFAULT.withWritable(true)))
                        .close());
        assertMentions(e, image, c.expect());
        assertArrayEquals(before, Files.readAllBytes(image), "the refusal wrote nothing");
      }
      case OK -> {
        Path ref = dir.resolve("ref.raw");
        Qemu.convertRaw(image, ref, null);
        try (BackingChain chain = ChainOpener.open(image, OBSERVED)) {
          ByteBuffer b = ByteBuffer.allocate((int) chain.size());
          chain.read(b, 0);
          assertArrayEquals(Files.readAllBytes(ref), b.array());
        }
      }
    }
  }

  /** What base() holds: 0x01 in the first 64 KiB, 0x02 in the 64 KiB at 4 MiB, zeros elsewhere. */
  private static byte[] baseBytes(long size) {
    byte[] want = new byte[(int) size];
    Arrays.fill(want, 0, 65536, (byte) 1);
    Arrays.fill(want, 4 << 20, (4 << 20) + 65536, (byte) 2);
    return want;
  }

  private static byte[] readAll(BackingChain chain) throws IOException {
    ByteBuffer b = ByteBuffer.allocate((int) chain.size());
    chain.read(b, 0);
    return b.array();
  }

  private static void assertMentions(IOException e, Path image, String... expect) {
    String m = e.getMessage();
    for (String s : expect) {
      if (!m.contains(s)) {
        fail("message lacks '" + s + "': " + m);
      }
    }
    assertTrue(m.contains(image.getParent().toString()), "message names the file: " + m);
  }

  @AfterAll
  static void summary() {
    System.out.printf(
        Locale.ROOT,
        "hostile images: cases %d, refused %d, eio %d, ok %d, snapshots ignored %d, bitmaps"
            + " ignored %d, hangs %d, crashes %d%n",
        cases().size(),
        TALLY[0].get(),
        TALLY[1].get(),
        TALLY[2].get(),
        TALLY[3].get(),
        TALLY[4].get(),
        HANGS.get(),
        CRASHES.get());
  }
}
