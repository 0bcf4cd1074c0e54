package org.jqcowfs.cli;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.io.HostFileOptions;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.Qcow2Options;
import org.jqcowfs.qcow2.format.BitmapOp;
import org.jqcowfs.qcow2.format.BitmapOp.Kind;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/**
 * {@code jqcowfs bitmap}: edits a persistent dirty bitmap with {@code qemu-img bitmap}'s syntax and
 * behaviour (QEMU {@code img_bitmap}): the operations run in the order given, and the image is left
 * unchanged when one is refused.
 */
@Command(
    name = "bitmap",
    mixinStandardHelpOptions = true,
    customSynopsis =
        "jqcowfs bitmap (--merge SOURCE | --add | --remove | --clear | --enable | --disable)..."
            + " [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [-f qcow2] IMAGE BITMAP",
    description = {
      "Add, remove, clear, enable, disable or merge into the persistent dirty bitmap BITMAP of the"
          + " qcow2 image IMAGE, as qemu-img bitmap does; several operations run in order.",
      "Incremental backup tools read the bitmaps with jqcowfs map --bitmap or qemu-nbd -B."
    })
final class BitmapCommand implements Callable<Integer> {
  @Spec picocli.CommandLine.Model.CommandSpec spec;

  private final List<BitmapOp> ops = new ArrayList<>();
  private boolean addDisabled;
  private boolean merging;

  @Option(names = "--add", description = "Create BITMAP, enabled to record future writes.")
  void add(boolean on) {
    ops.add(BitmapOp.of(Kind.ADD));
  }

  @Option(names = "--remove", description = "Remove BITMAP.")
  void remove(boolean on) {
    ops.add(BitmapOp.of(Kind.REMOVE));
  }

  @Option(names = "--clear", description = "Clear BITMAP: no range dirty.")
  void clear(boolean on) {
    ops.add(BitmapOp.of(Kind.CLEAR));
  }

  @Option(names = "--enable", description = "BITMAP records future writes.")
  void enable(boolean on) {
    ops.add(BitmapOp.of(Kind.ENABLE));
  }

  @Option(
      names = "--disable",
      description = "BITMAP stops recording future writes (with --add: created disabled).")
  void disable(boolean on) {
    ops.add(BitmapOp.of(Kind.DISABLE));
    addDisabled = true;
  }

  @Option(
      names = "--merge",
      paramLabel = "SOURCE",
      description = "Merge the bitmap SOURCE (of IMAGE, or of SOURCE_FILE) into BITMAP.")
  void merge(String source) {
    ops.add(new BitmapOp(Kind.MERGE, 0, false, source, null));
    merging = true;
  }

  @Option(
      names = "-g",
      paramLabel = "GRANULARITY",
      description = "With --add: bytes of guest data per bit (k, M suffixes), 512 to 2G.")
  String granularity;

  @Option(
      names = "-b",
      paramLabel = "SOURCE_FILE",
      description = "With --merge: the image of SOURCE.")
  Path sourceFile;

  @Option(names = "-F", paramLabel = "SOURCE_FMT", description = "SOURCE_FILE's format: qcow2.")
  String sourceFormat;

  @Option(names = "-f", paramLabel = "FMT", description = "IMAGE's format: qcow2 only.")
  String format = "qcow2";

  @Parameters(index = "0", paramLabel = "IMAGE", description = "A local qcow2 image.")
  Path image;

  @Parameters(index = "1", paramLabel = "BITMAP", description = "The bitmap's name.")
  String bitmap;

  @Override
  public Integer call() throws Exception {
    if (ops.isEmpty()) {
      throw usage("Need at least one of --add, --remove, --clear, --enable, --disable, or --merge");
    }
    boolean adding = ops.stream().anyMatch(o -> o.kind() == Kind.ADD);
    if (granularity != null && !adding) {
      throw usage("granularity only supported with --add");
    }
    if (sourceFormat != null && sourceFile == null) {
      throw usage("-F only supported with -b");
    }
    if (sourceFile != null && !merging) {
      throw usage("Merge bitmap source file only supported with --merge");
    }
    if (!format.equals("qcow2") || (sourceFormat != null && !sourceFormat.equals("qcow2"))) {
      throw new IllegalArgumentException("jqcowfs keeps bitmaps in qcow2 images only");
    }
    long g = granularity == null ? 0 : Sizes.parse(granularity);
    Qcow2Image source = sourceFile == null ? null : Qcow2Image.open(sourceFile);
    try (Qcow2Image q =
        Qcow2Image.open(
            image, Qcow2Options.DEFAULT.withHostIo(HostFileOptions.DEFAULT.withWritable(true)))) {
      List<BitmapOp> resolved = new ArrayList<>();
      for (BitmapOp op : ops) {
        resolved.add(
            switch (op.kind()) {
              case ADD -> new BitmapOp(Kind.ADD, g, addDisabled, null, null);
              case MERGE ->
                  source == null
                      ? op
                      : new BitmapOp(
                          Kind.MERGE,
                          0,
                          false,
                          op.source(),
                          sink ->
                              source.dirtyExtents(
                                  op.source(),
                                  (start, length, dirty) -> {
                                    if (dirty) {
                                      sink.dirty(start, length);
                                    }
                                  }));
              default -> op;
            });
      }
      q.editor().editBitmaps(bitmap, resolved);
    } finally {
      if (source != null) {
        source.close();
      }
    }
    return 0;
  }

  private picocli.CommandLine.ParameterException usage(String message) {
    return new picocli.CommandLine.ParameterException(spec.commandLine(), message);
  }
}
