package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.jqcowfs.image.Image;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.ImageLock;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.Qcow2WriteTest.Case;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.storage.FileLocation;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Power cuts at every instant, the way dm-log-writes replays a device: a workload of writes,
 * write-zeroes, discards and flushes runs over a {@link RecordingStorage}; then crash states are
 * rebuilt from the log: the writes up to each sync, plus random subsets (in 4 KiB pieces) of the
 * writes between it and the next sync. Each state must be consistent for {@code qemu-img check}
 * (leaks allowed, no corruption) and must read, through {@code qemu-img convert}, every byte
 * written before the last {@link Qcow2Image#flush} that had completed. {@code
 * -Djqcowfs.crashStates=N} checks N states per workload (0: all of them; the CI slice checks 24).
 */
class CrashStateTest {
  private static final int STATES = Integer.getInteger("jqcowfs.crashStates", 24);
  private static final int SUBSETS = Integer.getInteger("jqcowfs.crashSubsets", 2);
  private static final int PIECE = 4096;

  @TempDir Path dir;

  /** The passphrase file of an image encrypted with LUKS, or null. */
  private Path passphrase;

  private record Op(long offset, int length, byte pattern) {}

  /** A completed {@link Qcow2Image#flush}: the ops before it and the syncs done by its end. */
  private record FlushPoint(int ops, int syncs) {}

  /** A crash state: the writes up to sync {@code syncs}, then a subset chosen by {@code seed}. */
  private record State(int syncs, long seed) {}

  @ParameterizedTest
  @EnumSource(Case.class)
  void everyCrashStateIsConsistentAndKeepsFlushedWrites(Case c) throws Exception {
    run(c, false);
  }

  /**
   * An image encrypted with LUKS (QEMU {@code qcow2_co_encrypt}): every data write is whole
   * sectors, an unaligned one rewriting the sectors it touches, copy-on-write encrypts what it
   * copies. States are read through {@code qemu-img} with the passphrase.
   */
  @ParameterizedTest
  @EnumSource(
      value = Case.class,
      names = {"V3_64K", "EXTENDED_L2"})
  void encryptedEveryCrashStateIsConsistentAndKeepsFlushedWrites(Case c) throws Exception {
    passphrase = Files.writeString(dir.resolve("pass"), "crash secret");
    run(c, false);
  }

  /**
   * With persistent dirty bitmaps (four enabled at granularities from 512 B to 16 MiB, one
   * disabled), every state of the close that stores them is checked too: in each, an enabled bitmap
   * is in use or holds every request finished before the last completed flush, and the disabled one
   * is unchanged.
   */
  @ParameterizedTest
  @EnumSource(
      value = Case.class,
      names = {"V3_64K", "CLUSTER_512"})
  void withBitmapsEveryCrashStateKeepsThemSafe(Case c) throws Exception {
    run(c, true);
  }

  /**
   * Resizes ({@link Qcow2Editor#resize}, QEMU {@code qcow2_co_truncate}): growing past the L1 table
   * (a new table, the header moved to it, the old one freed), growing an overlay over a longer base
   * (the new range zeroed), shrinking over data (clusters discarded, L1 entries zeroed, L2 tables
   * freed). Every crash state checks clean and reads the old disk or the new one: the old size with
   * the old bytes, or the new size with the old bytes up to the smaller size and zeros after.
   */
  @ParameterizedTest
  @org.junit.jupiter.params.provider.ValueSource(
      strings = {"grow-l1", "grow-overlay", "shrink", "grow-bitmaps", "shrink-bitmaps"})
  void everyCrashStateOfAResizeReadsTheOldOrTheNewDisk(String kind) throws Exception {
    Path image = dir.resolve("img.qcow2");
    long oldBytes;
    long newBytes;
    switch (kind) {
      case "grow-l1" -> {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=512", "img.qcow2", "4M");
        Qemu.io(dir, "img.qcow2", "write -q -P 1 0 1M", "write -q -P 2 3M 1M");
        oldBytes = 4 << 20;
        newBytes = 64 << 20;
      }
      case "grow-overlay" -> {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "base.qcow2", "8M");
        Qemu.io(dir, "base.qcow2", "write -q -P 7 0 8M");
        Qemu.img(
            dir,
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "extended_l2=on",
            "-b",
            "base.qcow2",
            "-F",
            "qcow2",
            "img.qcow2",
            "4000256");
        Qemu.io(dir, "img.qcow2", "write -q -P 8 1M 4k");
        oldBytes = 4000256;
        newBytes = 12 << 20;
      }
      case "grow-bitmaps", "shrink-bitmaps" -> {
        // b0: 512 B granules, so that a table entry covers 16 MiB and the table changes length
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", "img.qcow2", "40M");
        Qemu.img(dir, "bitmap", "--add", "-g", "512", "img.qcow2", "b0");
        Qemu.img(dir, "bitmap", "--add", "--disable", "img.qcow2", "b1");
        Qemu.io(dir, "img.qcow2", "write -q -P 1 0 2M", "write -q -P 3 30M 2M");
        Qemu.img(dir, "bitmap", "--merge", "b0", "img.qcow2", "b1");
        Qemu.io(dir, "img.qcow2", "write -q -P 4 2900k 8k", "write -q -P 5 39M 8k");
        oldBytes = 40 << 20;
        newBytes = kind.startsWith("grow") ? 100 << 20 : 3 << 20;
      }
      default -> {
        Qemu.img(dir, "create", "-q", "-f", "qcow2", "img.qcow2", "8M");
        Qemu.io(
            dir,
            "img.qcow2",
            "write -q -P 1 0 2M",
            "write -q -c -P 2 4M 256k",
            "write -q -P 3 6M 2M",
            "write -q -z 2M 64k");
        oldBytes = 8 << 20;
        newBytes = 3 << 20;
      }
    }
    boolean bitmaps = kind.endsWith("-bitmaps");
    int consistent = 0;
    List<List<long[]>> bitmapsBefore = new ArrayList<>();
    for (String name : bitmaps ? List.of("b0", "b1") : List.<String>of()) {
      bitmapsBefore.add(Qemu.dirtyBitmap(image, name));
    }
    Path original = Files.copy(image, dir.resolve("original.qcow2"));
    byte[] before = Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("initial.raw"), null));
    RecordingStorage recording = recorder(image);
    Image backing = kind.equals("grow-overlay") ? Qcow2Image.open(dir.resolve("base.qcow2")) : null;
    try (Qcow2Image top = openRecorded(image, recording)) {
      if (backing != null) {
        top.setBacking(backing);
      }
      top.editor().resize(newBytes);
    } finally {
      if (backing != null) {
        backing.close();
      }
    }
    List<RecordingStorage.Entry> log = recording.log();
    Random random = new Random(kind.hashCode());
    List<State> states = chooseStates(log, List.of(), random, 0);
    Path state = dir.resolve("state.qcow2");
    long common = Math.min(oldBytes, newBytes);
    int newSized = 0;
    for (State s : states) {
      rebuildConsistent(kind, original, recording, log, s, state);
      Path raw = dir.resolve("state.raw");
      Files.deleteIfExists(raw);
      byte[] after = Files.readAllBytes(Qemu.convertRaw(state, raw, null));
      assertTrue(
          after.length == oldBytes || after.length == newBytes,
          kind + ": state " + s + " has " + after.length + " bytes");
      assertTrue(
          Arrays.equals(before, 0, (int) common, after, 0, (int) common),
          kind + ": state " + s + " changed the bytes both sizes have");
      if (bitmaps) { // each consistent bitmap holds its bits, for the state's size
        String info = Qemu.img(dir, "info", "--output=json", state.toString());
        for (int b = 0; b < 2; b++) {
          String name = "b" + b;
          java.util.regex.Matcher flags =
              java.util.regex.Pattern.compile(
                      "\\\"flags\\\": \\[([^\\]]*)\\],\\s*\\\"name\\\": \\\"" + name + "\\\"")
                  .matcher(info);
          // absent (the bitmaps bit cleared while the directory is rewritten: QEMU ignores them)
          // or in use: not trusted; else it must hold its bits
          if (!flags.find() || flags.group(1).contains("in-use")) {
            continue;
          }
          consistent++;
          assertEquals(
              Qemu.dirtyRuns(clip(bitmapsBefore.get(b), after.length)),
              Qemu.dirtyRuns(Qemu.dirtyBitmap(state, name)),
              kind + ": state " + s + ": bitmap " + name + " consistent but not as before");
        }
      }
      if (after.length == newBytes) {
        newSized++;
        for (int i = (int) common; i < after.length; i++) {
          if (after[i] != 0) {
            fail(kind + ": state " + s + ": byte " + i + " past the old end is " + after[i]);
          }
        }
      }
    }
    recording.closeLog();
    assertTrue(newSized > 0 && newSized < states.size(), kind + ": old and new sizes both seen");
    assertTrue(!bitmaps || consistent > 0, kind + ": consistent bitmaps checked");
    System.out.printf(
        "crash states: resize %s: %d checked of %d syncs, %d with the new size, %d consistent"
            + " bitmaps%n",
        kind, states.size(), syncs(log), newSized, consistent);
  }

  /**
   * Snapshot create, delete and apply ({@code SnapshotEditor}) on an image with a snapshot that
   * shares data, compressed and zero clusters with the active disk, cut at every sync (and 4 KiB
   * subsets of the writes after it). Every crash state reads the old active disk or (apply) the
   * snapshot's, and lists the old snapshots or the new ones. It checks clean (leaks allowed), but
   * for the one window SnapshotEditor describes: a COPIED flag whose L2 table and refcount block
   * were synced apart, reported as OFLAG_COPIED only while the snapshot that would share the
   * cluster is not listed (create: COPIED on a refcount of 2; delete: none on a refcount of 1), and
   * gone after {@code qemu-img check -r all}.
   */
  @ParameterizedTest
  @org.junit.jupiter.params.provider.ValueSource(
      strings = {"create", "delete", "delete-shared", "apply"})
  void everyCrashStateOfASnapshotChangeReadsTheOldOrTheNewImage(String kind) throws Exception {
    Path image = dir.resolve("img.qcow2");
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "img.qcow2", "8M");
    Qemu.io(
        dir,
        "img.qcow2",
        "write -q -P 1 0 2M",
        "write -q -c -P 2 4M 256k",
        "write -q -z 3M 64k",
        "write -q -P 3 6M 1M");
    Qemu.img(dir, "snapshot", "-c", "s1", "img.qcow2");
    Qemu.io(dir, "img.qcow2", "write -q -P 4 1M 2M", "write -q -P 5 6M 64k");
    if (kind.equals("delete-shared")) { // s1's clusters stay shared with s2: no COPIED changes
      Qemu.img(dir, "snapshot", "-c", "s2", "img.qcow2");
    }
    Path original = Files.copy(image, dir.resolve("original.qcow2"));
    byte[] before = Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("initial.raw"), null));
    byte[] s1 = Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("s1.raw"), "s1"));
    String oldList = snapshotNames(image);
    RecordingStorage recording = recorder(image);
    try (Qcow2Image q = openRecorded(image, recording)) {
      switch (kind) {
        case "create" -> q.editor().createSnapshot("new");
        case "delete", "delete-shared" -> q.editor().deleteSnapshot("s1");
        default -> q.editor().applySnapshot("s1");
      }
    }
    String newList = snapshotNames(image);
    List<RecordingStorage.Entry> log = recording.log();
    Random random = new Random(kind.hashCode());
    List<State> states = chooseStates(log, List.of(), random, 0);
    Path state = dir.resolve("state.qcow2");
    int copiedWindow = 0;
    int newSeen = 0;
    for (State st : states) {
      rebuild(original, recording, log, st, state);
      String list = snapshotNames(state);
      boolean isNew = list.equals(newList);
      assertTrue(isNew || list.equals(oldList), kind + ": state " + st + " lists " + list);
      Qemu.Check check = Qemu.check(state);
      if (check.exitStatus() == 2) {
        boolean benign =
            !kind.equals("apply")
                && isNew == kind.startsWith("delete")
                && check.messages().stream()
                    .filter(m -> m.startsWith("ERROR"))
                    .allMatch(m -> m.startsWith("ERROR OFLAG_COPIED"));
        if (!benign) {
          Files.copy(state, dir.resolve("failed.qcow2"), StandardCopyOption.REPLACE_EXISTING);
          fail(kind + ": crash state " + st + " (lists " + list + ") is not consistent: " + check);
        }
        copiedWindow++;
        Path repaired = Files.copy(state, dir.resolve("repaired.qcow2"));
        Qemu.repair(repaired, "all");
        assertEquals(0, Qemu.check(repaired).exitStatus(), kind + ": " + st + " after check -r");
        Files.delete(repaired);
      } else if (check.exitStatus() != 0 && check.exitStatus() != 3) {
        fail(kind + ": crash state " + st + " is not consistent: " + check);
      }
      Path raw = dir.resolve("state.raw");
      Files.deleteIfExists(raw);
      byte[] after = Files.readAllBytes(Qemu.convertRaw(state, raw, null));
      boolean applied = kind.equals("apply") && Arrays.equals(s1, after);
      assertTrue(
          Arrays.equals(before, after) || applied,
          kind + ": state " + st + " reads neither the old disk nor the new one");
      newSeen += (kind.equals("apply") ? applied : isNew) ? 1 : 0;
    }
    recording.closeLog();
    assertTrue(
        newSeen > 0 && newSeen < states.size(),
        kind + ": old and new states both seen: " + newSeen + " of " + states.size());
    System.out.printf(
        "crash states: snapshot %s: %d checked of %d syncs, %d in the COPIED window%n",
        kind, states.size(), syncs(log), copiedWindow);
  }

  /**
   * {@code qemu-img amend}'s format changes ({@code Amend}): a refcount width change (new
   * structures after the file's end, then one header write), a downgrade (zero clusters expanded,
   * then the v2 header) and an upgrade, cut at every sync (and 4 KiB subsets of the writes after
   * it). Every crash state reads the same disk, checks clean (leaks allowed) and has the old format
   * or the new one.
   */
  @ParameterizedTest
  @org.junit.jupiter.params.provider.ValueSource(
      strings = {"refcount_bits=1", "refcount_bits=64", "compat=0.10", "compat=1.1"})
  void everyCrashStateOfAnAmendReadsTheSameDisk(String option) throws Exception {
    Path image = dir.resolve("img.qcow2");
    boolean v2 = option.equals("compat=1.1");
    Qemu.img(
        dir,
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        v2 ? "compat=0.10" : "compat=1.1",
        "img.qcow2",
        "8M");
    Qemu.io(
        dir,
        "img.qcow2",
        "write -q -P 1 0 2M",
        v2 ? "write -q -P 0 3M 64k" : "write -q -z 3M 64k",
        "write -q -P 2 5M 128k",
        v2 ? "write -q -P 0 5M 64k" : "write -q -z 5M 64k");
    Path original = Files.copy(image, dir.resolve("original.qcow2"));
    byte[] before = Files.readAllBytes(Qemu.convertRaw(image, dir.resolve("initial.raw"), null));
    String oldFormat = format(image);
    RecordingStorage recording = recorder(image);
    String[] kv = option.split("=");
    Qcow2Editor.Amendment a =
        kv[0].equals("compat")
            ? new Qcow2Editor.Amendment(kv[1].equals("1.1") ? 3 : 2, null, null, null)
            : new Qcow2Editor.Amendment(null, null, Integer.parseInt(kv[1]), null);
    try (Qcow2Image q = openRecorded(image, recording)) {
      q.editor().amend(a);
    }
    String newFormat = format(image);
    List<RecordingStorage.Entry> log = recording.log();
    Random random = new Random(option.hashCode());
    List<State> states = chooseStates(log, List.of(), random, 0);
    Path state = dir.resolve("state.qcow2");
    int newSeen = 0;
    for (State st : states) {
      rebuildConsistent(option, original, recording, log, st, state);
      String f = format(state);
      assertTrue(f.equals(oldFormat) || f.equals(newFormat), option + ": " + st + " is " + f);
      newSeen += f.equals(newFormat) ? 1 : 0;
      Path raw = dir.resolve("state.raw");
      Files.deleteIfExists(raw);
      assertTrue(
          Arrays.equals(before, Files.readAllBytes(Qemu.convertRaw(state, raw, null))),
          option + ": state " + st + " reads another disk");
    }
    recording.closeLog();
    assertTrue(newSeen > 0 && newSeen < states.size(), option + ": old and new formats seen");
    System.out.printf(
        "crash states: amend %s: %d checked of %d syncs, %d with the new format%n",
        option, states.size(), syncs(log), newSeen);
  }

  /** Dirty runs as {@link Qemu#dirtyBitmap} gives them, for a disk of {@code bytes}. */
  private static List<long[]> clip(List<long[]> runs, long bytes) {
    List<long[]> out = new ArrayList<>();
    for (long[] r : runs) {
      long end = Math.min(r[0] + r[1], bytes);
      if (r[0] < end) {
        out.add(new long[] {r[0], end - r[0], r[2]});
      }
    }
    return out;
  }

  /** The compat level and refcount width qemu-img info reports. */
  private static String format(Path image) throws IOException {
    String json = Qemu.img(image.getParent(), "info", "--output=json", image.toString());
    java.util.regex.Matcher c =
        java.util.regex.Pattern.compile("\"compat\": \"([^\"]*)\"").matcher(json);
    java.util.regex.Matcher r =
        java.util.regex.Pattern.compile("\"refcount-bits\": (\\d+)").matcher(json);
    return (c.find() ? c.group(1) : "?") + "/" + (r.find() ? r.group(1) : "?");
  }

  /** {@code image} opened writable, every write and sync through it recorded beside it. */
  private RecordingStorage recorder(Path image) throws IOException {
    return new RecordingStorage(
        PosixStorage.open(image, HostFileOptions.DEFAULT.withWritable(true)), dir.resolve("log"));
  }

  /** The image in {@code recording}, opened writable and locked, as the opener opens it. */
  private Qcow2Image openRecorded(Path image, RecordingStorage recording) throws IOException {
    Qcow2Options options =
        new Qcow2Options(-1, null, null, HostFileOptions.DEFAULT.withWritable(true));
    if (passphrase != null) {
      options = options.withPassphrases(List.of(Files.readAllBytes(passphrase)));
    }
    return Qcow2Opener.open(
        FileLocation.of(image), options, recording, ImageLock.acquireForWrite(image));
  }

  private static final String SECRET = "secret,id=s,file=pass";

  /** The case's image, made by QEMU encrypted with {@link #passphrase}, with the first data. */
  private Path prepareEncrypted(Case c) throws IOException {
    Path image = dir.resolve("top.qcow2");
    Qemu.createWithSecret(
        dir,
        image,
        c.options + ",encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10",
        Long.toString(Qcow2WriteTest.SIZE));
    Qemu.run(
        dir,
        "qemu-io",
        "--object",
        SECRET,
        "--image-opts",
        opts(image),
        "-c",
        "write -q -P 0xa1 1M 3M",
        "-c",
        "write -q -P 0xa2 40M 64k");
    return image;
  }

  /** QEMU's {@code --image-opts} of {@code image} with the secret. */
  private static String opts(Path image) {
    return "driver=qcow2,file.filename=" + image + ",encrypt.key-secret=s";
  }

  /** {@code qemu-img convert -O raw}, given the secret when the image is encrypted. */
  private Path convertRaw(Path image, Path out) throws IOException {
    if (passphrase == null) {
      return Qemu.convertRaw(image, out, null);
    }
    return Qemu.convertRawOpts(dir, opts(image), out, SECRET);
  }

  /** The snapshot IDs and names of {@code image}, from qemu-img snapshot -l. */
  private static String snapshotNames(Path image) throws IOException {
    return String.join(";", Qemu.snapshots(image));
  }

  private void run(Case c, boolean bitmaps) throws Exception {
    Path image = passphrase == null ? Qcow2WriteTest.prepare(dir, c) : prepareEncrypted(c);
    if (bitmaps) {
      BitmapWriteTest.addBitmaps(dir, image);
    }
    List<long[]> offBefore = bitmaps ? Qemu.dirtyBitmap(image, "off") : null;
    List<long[]> requests = new ArrayList<>(); // {offset, length} of each change, as asked
    int beforeClose = 0;
    Path original = Files.copy(image, dir.resolve("original.qcow2"));
    Path initialGuest = convertRaw(image, dir.resolve("initial.raw"));
    Random random = new Random(c.ordinal() * 31L + 5);
    List<Op> ops = new ArrayList<>();
    List<FlushPoint> flushes = new ArrayList<>();
    RecordingStorage recording = recorder(image);
    try (Qcow2Image top = openRecorded(image, recording);
        Image backing = Qcow2WriteTest.openBacking(dir, c)) {
      top.setBacking(backing);
      for (int i = 0; i < 24; i++) {
        if (random.nextInt(4) == 0) {
          top.flush();
          flushes.add(new FlushPoint(ops.size(), recording.flushes()));
          continue;
        }
        int length = 512 + random.nextInt(256 << 10);
        long offset = (long) (random.nextDouble() * (Qcow2WriteTest.SIZE - length));
        if (random.nextBoolean()) {
          offset &= ~511L;
        }
        requests.add(new long[] {offset, length, ops.size()});
        int kind = random.nextInt(8);
        if (kind == 0) {
          top.writeZeroes(offset, length, random.nextBoolean());
          ops.add(new Op(offset, length, (byte) 0));
        } else if (kind == 1) {
          top.discard(offset, length);
          long cs = top.geometry().clusterSize();
          long first = (offset + cs - 1) / cs * cs;
          long last = (offset + length) / cs * cs;
          if (first < last) { // whole clusters read as zeros after (v3, or v2 without backing)
            ops.add(new Op(first, (int) (last - first), (byte) 0));
          }
        } else {
          Op op = new Op(offset, length, (byte) (1 + i));
          ByteBuffer data = ByteBuffer.allocate(length);
          Arrays.fill(data.array(), op.pattern());
          top.write(data, offset);
          ops.add(op);
        }
      }
      beforeClose = recording.flushes();
    }
    flushes.add(new FlushPoint(ops.size(), recording.flushes())); // close flushes
    List<RecordingStorage.Entry> log = recording.log();
    List<State> states = chooseStates(log, flushes, random, bitmaps ? beforeClose : -1);
    Path state = dir.resolve("state.qcow2");
    int checked = 0;
    for (State s : states) {
      rebuildConsistent(c, original, recording, log, s, state);
      FlushPoint last = flushes.get(0);
      for (FlushPoint f : flushes) {
        if (f.syncs() <= s.syncs()) {
          last = f;
        }
      }
      if (last.syncs() <= s.syncs()) {
        compareFlushed(c, s, state, initialGuest, ops, last);
      }
      if (bitmaps) {
        checkBitmaps(c, s, state, requests, last, offBefore);
      }
      checked++;
    }
    recording.closeLog();
    assertTrue(checked >= Math.min(states.size(), 2), "states were checked");
    System.out.printf(
        "crash states: %s%s: %d checked of %d syncs, 0 corruptions%s%n",
        c,
        bitmaps ? " with bitmaps" : "",
        checked,
        syncs(log),
        bitmaps ? ", enabled bitmaps in use per state " + STATES_IN_USE : "");
    STATES_IN_USE.clear();
  }

  /**
   * The states to check: with {@link #STATES} 0, each sync's prefix and {@link #SUBSETS} random
   * subsets of the writes after it; else that many of those, always including each completed
   * flush's state and, from sync {@code mustFrom} on (-1: none), every state.
   */
  private static List<State> chooseStates(
      List<RecordingStorage.Entry> log, List<FlushPoint> flushes, Random random, int mustFrom) {
    int syncs = syncs(log);
    List<State> must = new ArrayList<>();
    List<State> rest = new ArrayList<>();
    for (int j = 0; j <= syncs; j++) {
      final int k = j;
      boolean flushState = flushes.stream().anyMatch(f -> f.syncs() == k);
      boolean all = mustFrom >= 0 && j >= mustFrom;
      (flushState || all ? must : rest).add(new State(j, 0));
      for (int s = 0; s < SUBSETS; s++) {
        (all ? must : rest).add(new State(j, random.nextLong() | 1));
      }
    }
    if (STATES == 0) {
      must.addAll(rest);
      return must;
    }
    Collections.shuffle(rest, random);
    must.addAll(rest.subList(0, Math.max(0, Math.min(rest.size(), STATES - must.size()))));
    return must;
  }

  /**
   * In crash state {@code state}: each enabled bitmap is in use ({@code qemu-img info}; or gone,
   * with the autoclear bit clear) or, as {@code qemu-nbd -B} exports it, dirty over every request
   * made before flush {@code last}; the disabled one is as it was.
   */
  private static void checkBitmaps(
      Case c, State s, Path state, List<long[]> requests, FlushPoint last, List<long[]> offBefore)
      throws IOException {
    String info = Qemu.img(state.getParent(), "info", "--output=json", state.toString());
    int inUse = 0;
    for (String name : List.of("g512", "g64k", "g4m", "g16m")) {
      int at = info.indexOf("\"name\": \"" + name + "\"");
      if (at < 0) { // autoclear bit clear: every bitmap inconsistent, as in use
        inUse++;
        continue;
      }
      String entry = info.substring(info.lastIndexOf('{', at), info.indexOf('}', at));
      if (entry.contains("in-use")) {
        inUse++;
        continue;
      }
      List<long[]> runs = Qemu.dirtyBitmap(state, name);
      for (long[] r : requests) {
        if (r[2] < last.ops() && !covered(runs, r[0], r[0] + r[1])) {
          fail(
              c
                  + ": crash state "
                  + s
                  + ": bitmap "
                  + name
                  + " is consistent but misses the"
                  + " request at "
                  + r[0]
                  + " (+"
                  + r[1]
                  + "): "
                  + Qemu.dirtyRuns(runs));
        }
      }
    }
    STATES_IN_USE.add(inUse);
    if (!info.contains("\"name\": \"off\"")) {
      return; // gone with the others
    }
    assertEquals(
        Qemu.dirtyRuns(offBefore),
        Qemu.dirtyRuns(Qemu.dirtyBitmap(state, "off")),
        c + ": crash state " + s + ": the disabled bitmap changed");
  }

  /** How many enabled bitmaps each checked state had in use (for the summary line). */
  private static final List<Integer> STATES_IN_USE = new ArrayList<>();

  /** Whether {@code runs} mark all of {@code [start, end)} dirty. */
  private static boolean covered(List<long[]> runs, long start, long end) {
    for (long[] r : runs) {
      if (r[2] == 1 && r[0] <= start && start < r[0] + r[1]) {
        start = r[0] + r[1];
      }
    }
    return start >= end;
  }

  /**
   * Rebuilds crash state {@code s} into {@code state} ({@link #rebuild}) and fails unless {@code
   * qemu-img check} finds it consistent (leaks allowed); the state is kept as failed.qcow2.
   */
  private void rebuildConsistent(
      Object what,
      Path original,
      RecordingStorage recording,
      List<RecordingStorage.Entry> log,
      State s,
      Path state)
      throws IOException {
    rebuild(original, recording, log, s, state);
    Qemu.Check check =
        passphrase == null ? Qemu.check(state) : Qemu.checkOpts(dir, opts(state), SECRET);
    if (check.exitStatus() != 0 && check.exitStatus() != 3) {
      Files.copy(state, dir.resolve("failed.qcow2"), StandardCopyOption.REPLACE_EXISTING);
      fail(
          what + ": crash state " + s + " of " + syncs(log) + " syncs is not consistent: " + check);
    }
  }

  private static int syncs(List<RecordingStorage.Entry> log) {
    return (int) log.stream().filter(RecordingStorage.Entry::isFlush).count();
  }

  /**
   * Writes to {@code out} the file after a power cut in state {@code s}: the original, every write
   * before sync {@code s.syncs()}, and of the writes after it (up to the next sync) the 4 KiB
   * pieces that {@code s.seed()} picks (none for seed 0).
   */
  private static void rebuild(
      Path original,
      RecordingStorage recording,
      List<RecordingStorage.Entry> log,
      State s,
      Path out)
      throws IOException {
    Files.copy(original, out, StandardCopyOption.REPLACE_EXISTING);
    int seen = 0;
    Random pick = new Random(s.seed());
    try (FileChannel ch = FileChannel.open(out, StandardOpenOption.WRITE)) {
      for (RecordingStorage.Entry e : log) {
        if (e.isFlush()) {
          if (++seen > s.syncs()) {
            break;
          }
          continue;
        }
        if (e.isCut()) {
          // before the sync: durable; after it: done or not, as the seed picks
          if (seen < s.syncs() || (s.seed() != 0 && pick.nextBoolean())) {
            ch.truncate(e.position());
          }
        } else if (e.isGrowth()) {
          // before the sync: durable; after it: kept or lost, as the seed picks
          if ((seen < s.syncs() || (s.seed() != 0 && pick.nextBoolean()))
              && ch.size() < e.position()) {
            ch.write(ByteBuffer.allocate(1), e.position() - 1); // the file reaches that length
          }
        } else if (seen < s.syncs()) {
          apply(ch, recording, e, 0, e.length());
        } else if (s.seed() != 0) {
          for (int from = 0; from < e.length(); ) {
            long next = (e.position() + from) / PIECE * PIECE + PIECE;
            int to = (int) Math.min(e.length(), next - e.position());
            if (pick.nextBoolean()) {
              apply(ch, recording, e, from, to);
            }
            from = to;
          }
        }
      }
    }
  }

  private static void apply(
      FileChannel ch, RecordingStorage recording, RecordingStorage.Entry e, int from, int to)
      throws IOException {
    ByteBuffer b = ByteBuffer.allocate(to - from);
    recording.readBytes(e, from, b);
    b.flip();
    while (b.hasRemaining()) {
      ch.write(b, e.position() + from + b.position());
    }
  }

  /**
   * Checks that the state reads, outside the ranges written after flush {@code last}, exactly what
   * the guest had written when that flush completed; compared in 1 MiB chunks.
   */
  private void compareFlushed(
      Case c, State s, Path state, Path initialGuest, List<Op> ops, FlushPoint last)
      throws IOException {
    Path raw = dir.resolve("state.raw");
    Files.deleteIfExists(raw);
    convertRaw(state, raw);
    int chunk = 1 << 20;
    try (FileChannel gotFile = FileChannel.open(raw);
        FileChannel initial = FileChannel.open(initialGuest)) {
      for (long base = 0; base < Qcow2WriteTest.SIZE; base += chunk) {
        byte[] got = new byte[chunk];
        byte[] want = new byte[chunk];
        gotFile.read(ByteBuffer.wrap(got), base);
        initial.read(ByteBuffer.wrap(want), base);
        for (int i = 0; i < ops.size(); i++) {
          Op op = ops.get(i);
          int from = (int) Math.max(0, op.offset() - base);
          int to = (int) Math.min(chunk, op.offset() + op.length() - base);
          if (from >= to) {
            continue;
          }
          if (i < last.ops()) {
            Arrays.fill(want, from, to, op.pattern());
          } else {
            System.arraycopy(got, from, want, from, to - from); // old or new bytes may be there
          }
        }
        int at = Arrays.mismatch(want, got);
        if (at >= 0) {
          fail(
              c
                  + ": crash state "
                  + s
                  + ": guest byte "
                  + (base + at)
                  + " reads "
                  + got[at]
                  + ", flushed before the crash as "
                  + want[at]);
        }
      }
    }
  }
}
