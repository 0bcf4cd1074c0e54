package org.jqcowfs.chainops;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixOpener;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.testing.ForwardingStorage;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.storage.FileLocation;
import org.jqcowfs.storage.Location;
import org.jqcowfs.storage.Storage;
import org.jqcowfs.storage.StorageOpener;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Crash states of the chain operations that write more than one file or a header that names
 * another: {@link Commit} (the base written and synced, then the top emptied) and {@link Rebase}
 * (differing ranges copied into the top, then its header names the new backing file). Every write,
 * sync, growth and hole punch of every file the operation opens is recorded in one log, in order; a
 * crash state is a point in that log after which nothing reached the disk, and of each file's
 * writes since its last sync before that point a random set of 4 KiB pieces (a sync of one file
 * makes only that file's writes durable). In every state the top reads the disk it read before
 * (through whichever backing file its header names) and every file checks clean (leaks allowed).
 */
class ChainCrashStateTest {
  private static final int PIECE = 4096;
  private static final int SUBSETS = 3;

  @TempDir Path dir;

  /** One recorded change: a write ({@code bytes}), a punched hole, a length change or a sync. */
  private record Entry(Path file, long position, long length, byte[] bytes, Kind kind) {}

  private enum Kind {
    WRITE,
    HOLE,
    LENGTH,
    SYNC
  }

  /** Opens local files as {@link PosixOpener#DEFAULT}, the writable ones recorded into one log. */
  private static final class Recorder implements StorageOpener {
    final List<Entry> log = Collections.synchronizedList(new ArrayList<>());

    @Override
    public Storage open(Location location, boolean writable) throws IOException {
      PosixStorage s = (PosixStorage) PosixOpener.DEFAULT.open(location, writable);
      if (!writable) {
        return s;
      }
      Path path = location.localPath().orElseThrow();
      return new ForwardingStorage(s) {
        @Override
        public void write(ByteBuffer src, long position) throws IOException {
          byte[] b = new byte[src.remaining()];
          src.duplicate().get(b);
          file.write(src, position);
          log.add(new Entry(path, position, b.length, b, Kind.WRITE));
        }

        @Override
        public void flush() throws IOException {
          file.flush();
          log.add(new Entry(path, 0, 0, null, Kind.SYNC));
        }

        @Override
        public void punchHole(long position, long length) throws IOException {
          file.punchHole(position, length);
          log.add(new Entry(path, position, length, null, Kind.HOLE));
        }

        @Override
        public void setLength(long bytes) throws IOException {
          file.setLength(bytes);
          log.add(new Entry(path, bytes, 0, null, Kind.LENGTH));
        }

        @Override
        public void reserve(long position, long length) throws IOException {
          long end = Math.max(file.length(), position + length);
          file.reserve(position, length);
          log.add(new Entry(path, end, 0, null, Kind.LENGTH));
        }

        @Override
        public void allocate(long position, long length) {
          throw new UnsupportedOperationException("not recorded: allocate");
        }
      };
    }

    @Override
    public Closeable lock(Location location, boolean writer) throws IOException {
      return PosixOpener.DEFAULT.lock(location, writer);
    }
  }

  /** base &lt;- mid &lt;- top, with data, zero clusters and a discard; and other.qcow2. */
  private void chain() throws IOException {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "base.qcow2", "8M");
    Qemu.io(dir, "base.qcow2", "write -q -P 1 0 4M", "write -q -c -P 2 6M 256k");
    Qemu.img(
        dir, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "mid.qcow2", "8M");
    Qemu.io(dir, "mid.qcow2", "write -q -P 3 1M 100k", "write -q -z 2M 512k");
    Qemu.img(
        dir, "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", "top.qcow2", "8M");
    Qemu.io(
        dir,
        "top.qcow2",
        "write -q -P 5 1500000 70000",
        "write -q -z 6M 64k",
        "write -q -P 6 7M 512k",
        "discard -q 7M 64k");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "other.qcow2", "8M");
    Qemu.io(dir, "other.qcow2", "write -q -P 1 0 2M", "write -q -P 8 3M 1M");
  }

  @ParameterizedTest
  @ValueSource(strings = {"commit", "commit-base", "rebase", "flatten"})
  void everyCrashStateReadsTheSameDisk(String op) throws Exception {
    chain();
    Path top = dir.resolve("top.qcow2");
    byte[] before = Files.readAllBytes(Qemu.convertRaw(top, dir.resolve("before.raw"), null));
    Path originals = Files.createDirectories(dir.resolve("originals"));
    List<String> files = List.of("base.qcow2", "mid.qcow2", "top.qcow2", "other.qcow2");
    for (String f : files) {
      Files.copy(dir.resolve(f), originals.resolve(f));
    }
    Recorder recorder = new Recorder();
    ChainOptions read = ChainOptions.DEFAULT.withStorage(recorder);
    ChainOptions writable = read.withHostIo(HostFileOptions.DEFAULT.withWritable(true));
    switch (op) {
      case "commit", "commit-base" -> {
        int base = op.equals("commit") ? 1 : 2;
        try (BackingChain c =
            ChainOpener.open(FileLocation.of(top), writable, d -> d == base || d == 0)) {
          Commit.commit(c, base, base == 1, done -> {});
        }
      }
      default -> {
        boolean flatten = op.equals("flatten");
        try (BackingChain c = ChainOpener.open(FileLocation.of(top), writable, d -> d == 0);
            BackingChain next =
                flatten
                    ? null
                    : ChainOpener.open(FileLocation.of(dir.resolve("other.qcow2")), read)) {
          Rebase.rebase(c, next, flatten ? null : "other.qcow2", flatten ? null : "qcow2", d -> {});
        }
      }
    }
    List<Entry> log = List.copyOf(recorder.log);
    List<int[]> states = new ArrayList<>(); // {cut: entries before it happened, seed}
    Random random = new Random(op.hashCode());
    for (int i = 0; i <= log.size(); i++) {
      if (i == log.size() || log.get(i).kind() == Kind.SYNC) {
        states.add(new int[] {i, 0});
        for (int s = 0; s < SUBSETS; s++) {
          states.add(new int[] {i, random.nextInt() | 1});
        }
      }
    }
    Path stateDir = Files.createDirectories(dir.resolve("state"));
    for (int[] st : states) {
      rebuild(originals, stateDir, files, log, st[0], st[1]);
      for (String f : files) {
        Qemu.Check check = Qemu.check(stateDir.resolve(f));
        if (check.exitStatus() != 0 && check.exitStatus() != 3) {
          fail(op + ": state " + st[0] + "/" + st[1] + ": " + f + " is not consistent: " + check);
        }
      }
      Path raw = stateDir.resolve("state.raw");
      Files.deleteIfExists(raw);
      assertArrayEquals(
          before,
          Files.readAllBytes(Qemu.convertRaw(stateDir.resolve("top.qcow2"), raw, null)),
          op + ": state " + st[0] + "/" + st[1] + " of " + log.size() + " reads another disk");
    }
    long syncs = log.stream().filter(e -> e.kind() == Kind.SYNC).count();
    assertTrue(syncs > 2, op + ": " + syncs + " syncs");
    System.out.printf(
        "crash states: %s: %d checked of %d syncs in %d files%n",
        op, states.size(), syncs, log.stream().map(Entry::file).distinct().count());
  }

  /**
   * Writes each file as it is after a crash before entry {@code cut}: its original, every change
   * before its last sync before the cut, and of its changes after that sync the 4 KiB pieces (and
   * length changes) {@code seed} picks (none for seed 0).
   */
  private static void rebuild(
      Path originals, Path out, List<String> files, List<Entry> log, int cut, int seed)
      throws IOException {
    Map<Path, Integer> lastSync = new HashMap<>();
    for (int i = 0; i < cut; i++) {
      if (log.get(i).kind() == Kind.SYNC) {
        lastSync.put(log.get(i).file(), i);
      }
    }
    Random pick = new Random(seed);
    Map<Path, FileChannel> channels = new LinkedHashMap<>();
    try {
      for (String f : files) {
        Files.copy(originals.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
      }
      for (int i = 0; i < cut; i++) {
        Entry e = log.get(i);
        if (e.kind() == Kind.SYNC) {
          continue;
        }
        Path target = out.resolve(e.file().getFileName());
        FileChannel ch = channels.get(target);
        if (ch == null) {
          ch = FileChannel.open(target, StandardOpenOption.WRITE);
          channels.put(target, ch);
        }
        boolean durable = i < lastSync.getOrDefault(e.file(), -1);
        switch (e.kind()) {
          case LENGTH -> {
            if (durable || (seed != 0 && pick.nextBoolean())) {
              if (e.position() < ch.size()) {
                ch.truncate(e.position());
              } else if (e.position() > ch.size()) {
                ch.write(ByteBuffer.allocate(1), e.position() - 1);
              }
            }
          }
          default -> {
            for (long from = 0; from < e.length(); ) {
              long next = (e.position() + from) / PIECE * PIECE + PIECE;
              long to = Math.min(e.length(), next - e.position());
              if (durable || (seed != 0 && pick.nextBoolean())) {
                ByteBuffer b =
                    e.kind() == Kind.WRITE
                        ? ByteBuffer.wrap(e.bytes(), (int) from, (int) (to - from))
                        : ByteBuffer.allocate((int) (to - from));
                long at = e.position() + from;
                while (b.hasRemaining()) {
                  at += ch.write(b, at);
                }
              }
              from = to;
            }
          }
        }
      }
    } finally {
      for (FileChannel ch : channels.values()) {
        ch.close();
      }
    }
  }
}
