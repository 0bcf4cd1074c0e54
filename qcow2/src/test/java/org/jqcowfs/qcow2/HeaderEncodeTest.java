package org.jqcowfs.qcow2;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.io.PosixStorage;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.metadata.MetadataIo;
import org.jqcowfs.qcow2.testing.Qemu;
import org.jqcowfs.storage.Storage;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * {@link Header#encode} writes the bytes qemu-img wrote ({@code qcow2_update_header}'s layout), and
 * decoding them gives the same header back.
 */
class HeaderEncodeTest {
  @TempDir Path dir;

  @ParameterizedTest
  @ValueSource(
      strings = {
        "-o compat=0.10",
        "-o compat=0.10 -b base.qcow2 -F qcow2",
        "",
        "-o cluster_size=4096,lazy_refcounts=on,refcount_bits=64",
        "-o extended_l2=on,cluster_size=128k",
        "-o compression_type=zstd -b base.qcow2 -F qcow2",
        "-o data_file=data.raw",
        "-o data_file=data.raw,data_file_raw=on",
        "-b base.raw -F raw -o cluster_size=2M",
      })
  void encodesAsQemuImgWrote(String options) throws IOException {
    encodesAsQemuImgWrote(options, false);
  }

  /** The bitmaps extension, after the feature name table, as qemu-img bitmap --add writes it. */
  @ParameterizedTest
  @ValueSource(strings = {"", "-o compression_type=zstd -b base.qcow2 -F qcow2"})
  void encodesTheBitmapsExtensionAsQemuImgWrote(String options) throws IOException {
    encodesAsQemuImgWrote(options, true);
  }

  private void encodesAsQemuImgWrote(String options, boolean bitmaps) throws IOException {
    Qemu.img(dir, "create", "-f", "qcow2", "base.qcow2", "64M");
    Qemu.img(dir, "create", "-f", "raw", "base.raw", "64M");
    List<String> args = new ArrayList<>(List.of("create", "-f", "qcow2"));
    if (!options.isEmpty()) {
      args.addAll(Arrays.asList(options.split(" ")));
    }
    args.addAll(List.of("top.qcow2", "64M"));
    Qemu.img(dir, args.toArray(String[]::new));
    Path top = dir.resolve("top.qcow2");
    if (bitmaps) {
      Qemu.img(dir, "bitmap", "--add", top.toString(), "b1");
      Qemu.img(dir, "bitmap", "--add", "-g", "512", top.toString(), "b2");
    }
    Header h;
    try (Storage f = PosixStorage.open(top, HostFileOptions.DEFAULT)) {
      h = MetadataIo.readHeader(f);
    }
    ByteBuffer encoded = h.encode();
    byte[] onDisk = Files.readAllBytes(top);
    byte[] want = Arrays.copyOf(onDisk, encoded.remaining());
    byte[] got = new byte[encoded.remaining()];
    encoded.duplicate().get(got);
    assertArrayEquals(want, got, options);
    for (int i = got.length; i < h.clusterSize() && i < onDisk.length; i++) {
      assertEquals(0, onDisk[i], "qemu-img wrote more header bytes at " + i + ": " + options);
    }
    ByteBuffer first = ByteBuffer.allocate((int) Math.min(h.clusterSize(), onDisk.length));
    first.put(encoded.duplicate()).clear();
    assertEquals(h, Header.decode(org.jqcowfs.storage.FileLocation.of(top), first, onDisk.length));
  }
}
