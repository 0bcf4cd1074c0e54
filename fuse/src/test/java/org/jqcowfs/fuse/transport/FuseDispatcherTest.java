package org.jqcowfs.fuse.transport;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.fuse.filesystem.Disk;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;
import org.jqcowfs.fuse.protocol.Errno;
import org.jqcowfs.fuse.protocol.FuseOpcode;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.readahead.ReadAheadImage;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The dispatcher driven without a kernel: requests laid out as the kernel's {@code
 * include/uapi/linux/fuse.h} lays them, answers read back from the reply buffer, over a qcow2 image
 * qemu-io wrote. INIT is negotiated (and a wrong major version refused), LOOKUP, OPEN, READ and
 * LSEEK answer what {@code qemu-img convert} and {@code qemu-img map} say, FUSE_INTERRUPT of a
 * request not in flight gets EAGAIN under the interrupt's unique, FORGET gets no answer, a WRITE to
 * the read-only mount EROFS and an unknown opcode ENOSYS.
 */
class FuseDispatcherTest {
  private static final int MIB = 1 << 20;

  @TempDir Path dir;
  private FlatFileSystem fs;
  private InvalInodeNotifier notifier;
  private FuseDispatcher dispatcher;
  private byte[] want;
  private long unique = 2;

  /** One answer: the unique and errno it carries and its payload (null when none was sent). */
  private record Answer(long unique, int error, byte[] payload) {}

  @BeforeEach
  void mount() throws Exception {
    Qemu.img(dir, "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", "disk.qcow2", "8M");
    Qemu.io(
        dir, "disk.qcow2", "write -q -P 17 1M 192k", "write -q -z 3M 1M", "write -q -P 5 5M 4k");
    want =
        Files.readAllBytes(Qemu.convertRaw(dir.resolve("disk.qcow2"), dir.resolve("w.raw"), null));
    BackingChain chain = ChainOpener.open(dir.resolve("disk.qcow2"), ChainOptions.DEFAULT);
    fs =
        FlatFileSystem.of(
            List.of(
                new Disk("disk.raw", chain, new ReadAheadImage(chain, 8 << 20), 0, 0, 0, 0444)));
    notifier = new InvalInodeNotifier(-1); // no kernel: a notification would fail, and is not sent
    dispatcher = new FuseDispatcher(fs, notifier, false);
  }

  @AfterEach
  void unmount() throws Exception {
    notifier.close();
    fs.close();
  }

  /** Dispatches {@code opcode} with {@code body}; the answer, or null when there was none. */
  private Answer send(FuseOpcode opcode, long nodeid, ByteBuffer body) {
    return send(opcode.code, nodeid, body, unique++);
  }

  private Answer send(int opcode, long nodeid, ByteBuffer body, long id) {
    ByteBuffer request =
        ByteBuffer.allocateDirect(40 + body.capacity()).order(ByteOrder.nativeOrder());
    request.putInt(0, 40 + body.capacity()).putInt(4, opcode).putLong(8, id).putLong(16, nodeid);
    request.put(40, body, 0, body.capacity());
    ByteBuffer out = ByteBuffer.allocateDirect(2 * MIB).order(ByteOrder.nativeOrder());
    ReplyPayload payload = new ReplyPayload();
    List<Answer> answers = new ArrayList<>();
    dispatcher.dispatch(
        request,
        out,
        payload,
        (u, error, bytes) -> {
          byte[] b = new byte[bytes];
          if (payload.lent().isEmpty()) {
            out.get(0, b);
          } else {
            ByteBuffer all = ByteBuffer.wrap(b);
            payload.lent().forEach(part -> all.put(part.duplicate()));
            payload.release();
          }
          answers.add(new Answer(u, error, b));
        });
    assertTrue(answers.size() <= 1, "one answer at most");
    return answers.isEmpty() ? null : answers.get(0);
  }

  private static ByteBuffer body(int bytes) {
    return ByteBuffer.allocate(bytes).order(ByteOrder.nativeOrder());
  }

  private static ByteBuffer payload(Answer a) {
    return ByteBuffer.wrap(a.payload()).order(ByteOrder.nativeOrder());
  }

  private void init() {
    Answer a =
        send(
            FuseOpcode.FUSE_INIT,
            0,
            body(64).putInt(0, 7).putInt(4, 31).putInt(8, 131072).putInt(12, -1));
    assertEquals(0, a.error());
    assertEquals(7, payload(a).getInt(0), "major");
    assertEquals(256, payload(a).getShort(28), "max_pages: 1 MiB requests");
  }

  @Test
  void initIsNegotiatedAndAWrongMajorRefused() throws Exception {
    Answer bad = send(FuseOpcode.FUSE_INIT, 0, body(64).putInt(0, 8));
    assertEquals(Errno.EIO, bad.error());
    assertTrue(!dispatcher.awaitInit(1), "not initialized by a refused INIT");
    init();
    assertTrue(dispatcher.awaitInit(1), "initialized once INIT is answered");
  }

  @Test
  void lookupOpenReadAndLseekAnswerAsQemu() throws Exception {
    init();
    ByteBuffer name = body(9).put(0, "disk.raw".getBytes(StandardCharsets.UTF_8));
    Answer entry = send(FuseOpcode.FUSE_LOOKUP, FlatFileSystem.ROOT_INODE, name);
    assertEquals(0, entry.error());
    long node = payload(entry).getLong(0);
    assertEquals(want.length, payload(entry).getLong(40 + 8), "attr.size: the virtual disk");

    Answer opened = send(FuseOpcode.FUSE_OPEN, node, body(8));
    assertEquals(0, opened.error());
    long fh = payload(opened).getLong(0);
    for (long offset : new long[] {0, MIB - 4096, 5 * MIB, want.length - 65536}) {
      Answer read =
          send(
              FuseOpcode.FUSE_READ,
              node,
              body(40).putLong(0, fh).putLong(8, offset).putInt(16, 65536));
      assertEquals(0, read.error());
      assertArrayEquals(
          Arrays.copyOfRange(want, (int) offset, (int) offset + 65536),
          read.payload(),
          "at " + offset);
    }

    List<long[]> data = qemuDataRanges();
    long firstData = data.get(0)[0];
    long firstHoleAfter = data.get(0)[1];
    assertEquals(firstData, lseek(node, fh, 0, FlatFileSystem.SEEK_DATA).getLong(0), "SEEK_DATA");
    assertEquals(
        firstHoleAfter,
        lseek(node, fh, firstData, FlatFileSystem.SEEK_HOLE).getLong(0),
        "SEEK_HOLE");
    Answer past =
        send(
            FuseOpcode.FUSE_LSEEK,
            node,
            body(24)
                .putLong(0, fh)
                .putLong(8, data.get(data.size() - 1)[1])
                .putInt(16, FlatFileSystem.SEEK_DATA));
    assertEquals(Errno.ENXIO, past.error(), "no data after the last: ENXIO");
    assertEquals(0, send(FuseOpcode.FUSE_RELEASE, node, body(24).putLong(0, fh)).error());
  }

  private ByteBuffer lseek(long node, long fh, long offset, int whence) {
    Answer a =
        send(
            FuseOpcode.FUSE_LSEEK,
            node,
            body(24).putLong(0, fh).putLong(8, offset).putInt(16, whence));
    assertEquals(0, a.error());
    return payload(a);
  }

  /** The data ranges of {@code qemu-img map --output=json}, merged, as [start, end). */
  private List<long[]> qemuDataRanges() throws Exception {
    String json = Qemu.img(dir, "map", "--output=json", "disk.qcow2");
    Matcher m =
        Pattern.compile("\"start\": (\\d+), \"length\": (\\d+),[^}]*\"data\": (true|false)")
            .matcher(json);
    List<long[]> ranges = new ArrayList<>();
    while (m.find()) {
      long start = Long.parseLong(m.group(1));
      long end = start + Long.parseLong(m.group(2));
      if (m.group(3).equals("true")) {
        if (!ranges.isEmpty() && ranges.get(ranges.size() - 1)[1] == start) {
          ranges.get(ranges.size() - 1)[1] = end;
        } else {
          ranges.add(new long[] {start, end});
        }
      }
    }
    assertTrue(ranges.size() >= 2, "qemu-img map shows the two data runs: " + json);
    return ranges;
  }

  @Test
  void interruptForgetWriteAndUnknownOpcodes() throws Exception {
    init();
    Answer interrupt = send(FuseOpcode.FUSE_INTERRUPT.code, 0, body(8).putLong(0, 999), 40);
    assertEquals(Errno.EAGAIN, interrupt.error(), "an interrupt for a request not in flight");
    assertEquals(40 | FuseDispatcher.FUSE_INT_REQ_BIT, interrupt.unique());
    assertEquals(null, send(FuseOpcode.FUSE_FORGET, 2, body(8).putLong(0, 1)), "FORGET: no answer");
    Answer write = send(FuseOpcode.FUSE_WRITE, 2, body(40 + 4096).putInt(16, 4096));
    assertEquals(Errno.EROFS, write.error(), "a read-only mount");
    assertEquals(Errno.ENOSYS, send(9999, 2, body(8), 77).error(), "an unknown opcode");
  }
}
