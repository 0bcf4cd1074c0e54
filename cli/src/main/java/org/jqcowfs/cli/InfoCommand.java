package org.jqcowfs.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.PrintWriter;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.Callable;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.cli.options.ImageOptions;
import org.jqcowfs.cli.options.Sizes;
import org.jqcowfs.image.Image;
import org.jqcowfs.qcow2.Qcow2Image;
import org.jqcowfs.qcow2.crypto.LuksHeader;
import org.jqcowfs.qcow2.format.BitmapDirectory;
import org.jqcowfs.qcow2.format.Header;
import org.jqcowfs.qcow2.format.Snapshot;
import org.jqcowfs.remote.RemoteOpener;
import org.jqcowfs.storage.Location;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.Spec;

/** {@code jqcowfs info}: the facts {@code qemu-img info} gives. */
@Command(
    name = "info",
    mixinStandardHelpOptions = true,
    description = "Show the facts of an image, as qemu-img info does.")
final class InfoCommand implements Callable<Integer> {
  @Spec picocli.CommandLine.Model.CommandSpec spec;

  @Option(names = "--output", description = "human or json (default: human)")
  OutputFormat output = OutputFormat.human;

  @Option(names = "--backing-chain", description = "Show every image of the backing chain.")
  boolean backingChain;

  @Mixin FormatOption format = new FormatOption();

  @Mixin ImageOptions share = new ImageOptions();

  @Parameters(
      paramLabel = "IMAGE",
      description = "A local path, or an http://, https:// or s3://BUCKET/KEY URL.")
  String image;

  @Override
  public Integer call() throws Exception {
    PrintWriter out = spec.commandLine().getOut();
    ObjectMapper json = new ObjectMapper();
    try (BackingChain chain =
        share.open(image, share.apply(format.apply(ChainOptions.DEFAULT)).withoutKeys(true))) {
      List<Image> layers = backingChain ? chain.layers() : List.of(chain.top());
      ArrayNode all = json.createArrayNode();
      for (int i = 0; i < layers.size(); i++) {
        ObjectNode node = describe(json, layers.get(i));
        if (output == OutputFormat.json) {
          all.add(node);
        } else {
          if (i > 0) {
            out.println();
          }
          printHuman(out, node);
        }
      }
      if (output == OutputFormat.json) {
        out.println(OutputFormat.qemuStyle(json, backingChain ? all : all.get(0)));
      }
    }
    out.flush();
    return 0;
  }

  private static ObjectNode describe(ObjectMapper json, Image image) throws Exception {
    ObjectNode n = json.createObjectNode();
    n.put("virtual-size", image.size());
    n.put("filename", image.location().toString());
    if (image instanceof Qcow2Image q) {
      Header h = q.header();
      n.put("cluster-size", h.clusterSize());
      n.put("format", "qcow2");
      n.put("actual-size", q.allocatedBytes());
      ObjectNode data = json.createObjectNode();
      data.put("compat", h.version() == 2 ? "0.10" : "1.1");
      data.put("compression-type", h.compressionType() == 1 ? "zstd" : "zlib");
      if (h.version() >= 3) {
        data.put("lazy-refcounts", (h.compatibleFeatures() & Header.COMPAT_LAZY_REFCOUNTS) != 0);
      }
      List<BitmapDirectory.Bitmap> bitmaps = q.bitmaps();
      if (!bitmaps.isEmpty()) { // qcow2_get_bitmap_info_list
        ArrayNode list = data.putArray("bitmaps");
        for (BitmapDirectory.Bitmap b : bitmaps) {
          ObjectNode bn = list.addObject();
          ArrayNode flags = bn.putArray("flags");
          if (b.inUse()) {
            flags.add("in-use");
          }
          if (b.auto()) {
            flags.add("auto");
          }
          bn.put("name", b.name());
          bn.put("granularity", b.granularity());
        }
      }
      data.put("refcount-bits", h.refcountBits());
      if (h.cryptMethod() != 0) {
        data.set("encrypt", encryption(json, q));
      }
      if (h.version() >= 3) {
        if (h.dataFileName() != null) {
          data.put("data-file", h.dataFileName());
          data.put("data-file-raw", (h.autoclearFeatures() & Header.AUTOCLEAR_DATA_FILE_RAW) != 0);
        }
        data.put("corrupt", h.hasIncompatible(Header.INCOMPAT_CORRUPT));
        data.put("extended-l2", h.hasIncompatible(Header.INCOMPAT_EXTL2));
      }
      ObjectNode specific = json.createObjectNode();
      specific.put("type", "qcow2");
      specific.set("data", data);
      n.set("format-specific", specific);
      if (!q.snapshots().isEmpty()) {
        ArrayNode snaps = json.createArrayNode();
        for (Snapshot s : q.snapshots()) {
          ObjectNode sn = json.createObjectNode();
          sn.put("id", s.id());
          sn.put("name", s.name());
          sn.put("vm-state-size", s.vmStateBytes());
          sn.put("date-sec", s.dateSeconds());
          sn.put("date-nsec", s.dateNanos());
          sn.put("vm-clock-sec", s.vmClockNanos() / 1_000_000_000L);
          sn.put("vm-clock-nsec", s.vmClockNanos() % 1_000_000_000L);
          if (s.icount() >= 0) {
            sn.put("icount", s.icount());
          }
          sn.put("virtual-size", s.virtualSize());
          snaps.add(sn);
        }
        n.set("snapshots", snaps);
      }
      if (h.backingFileName() != null) {
        // a URL a local overlay names is shown as messages show it: no user information, no query
        Optional<Location> url =
            q.location().localPath().isPresent()
                ? RemoteOpener.url(h.backingFileName())
                : Optional.empty();
        n.put("backing-filename", url.map(Location::toString).orElse(h.backingFileName()));
        n.put(
            "full-backing-filename",
            url.orElseGet(() -> q.location().resolve(h.backingFileName())).toString());
        if (h.backingFormat() != null) {
          n.put("backing-filename-format", h.backingFormat());
        }
      }
      if (h.cryptMethod() != 0) {
        n.put("encrypted", true);
      }
      n.put("dirty-flag", h.hasIncompatible(Header.INCOMPAT_DIRTY));
    } else {
      n.put("format", "raw");
      n.put(
          "actual-size",
          image.location().localPath().isPresent()
              ? java.nio.file.Files.size(localPath(image))
              : image.size());
      n.put("dirty-flag", false);
    }
    return n;
  }

  /**
   * The encryption facts as {@code qemu-img info} gives them ({@code qcrypto_block_luks_get_info},
   * in QEMU's key order), read from the LUKS header without the key; the legacy AES method: its
   * format only.
   */
  private static ObjectNode encryption(ObjectMapper json, Qcow2Image q) throws Exception {
    ObjectNode e = json.createObjectNode();
    Optional<LuksHeader> luks = q.luksHeader();
    if (luks.isEmpty()) {
      e.put("format", "aes");
      return e;
    }
    LuksHeader h = luks.get();
    e.put("ivgen-alg", h.ivgenAlg());
    e.put("hash-alg", h.hashSpec());
    e.put("cipher-alg", h.cipherAlg());
    e.put("uuid", h.uuid());
    if (h.ivgenHashAlg() != null) {
      e.put("ivgen-hash-alg", h.ivgenHashAlg());
    }
    e.put("format", "luks");
    e.put("cipher-mode", h.blockMode());
    ArrayNode slots = e.putArray("slots");
    for (int i = 0; i < LuksHeader.SLOTS; i++) {
      ObjectNode s = slots.addObject();
      int index = i;
      Optional<LuksHeader.KeySlot> active =
          h.slots().stream().filter(k -> k.index() == index).findFirst();
      s.put("active", active.isPresent());
      if (active.isPresent()) {
        s.put("iters", active.get().iterations());
      }
      s.put("key-offset", h.keyMaterialOffsets().get(i));
      if (active.isPresent()) {
        s.put("stripes", LuksHeader.STRIPES);
      }
    }
    e.put("payload-offset", h.payloadOffset());
    e.put("master-key-iters", h.mkDigestIterations());
    return e;
  }

  /** The local file of a raw image: info opens only local files. */
  private static java.nio.file.Path localPath(Image image) {
    return image
        .location()
        .localPath()
        .orElseThrow(() -> new IllegalStateException(image.location() + ": not a local file"));
  }

  private static void printHuman(PrintWriter out, ObjectNode n) {
    out.println("image: " + n.get("filename").asText());
    out.println("file format: " + n.get("format").asText());
    long vs = n.get("virtual-size").asLong();
    out.println("virtual size: " + Sizes.human(vs) + " (" + vs + " bytes)");
    out.println("disk size: " + Sizes.human(n.get("actual-size").asLong()));
    if (n.has("encrypted")) {
      out.println("encrypted: yes");
    }
    if (n.has("cluster-size")) {
      out.println("cluster_size: " + n.get("cluster-size").asLong());
    }
    if (n.has("backing-filename")) {
      out.println(
          "backing file: "
              + n.get("backing-filename").asText()
              + " (actual path: "
              + n.get("full-backing-filename").asText()
              + ")");
    }
    if (n.has("backing-filename-format")) {
      out.println("backing file format: " + n.get("backing-filename-format").asText());
    }
    if (n.has("snapshots")) {
      out.println("Snapshot list:");
      SnapshotCommand.printTable(out, n.get("snapshots"));
    }
    if (n.has("format-specific")) {
      out.println("Format specific information:");
      dump(out, n.get("format-specific").get("data"), "    ");
    }
  }

  /** Nested data as QEMU's human output shows it ({@code qapi} dump): 4 spaces a level. */
  private static void dump(PrintWriter out, JsonNode node, String indent) {
    if (node.isObject()) {
      node.fields()
          .forEachRemaining(
              f -> dumpField(out, f.getKey().replace('-', ' '), f.getValue(), indent));
    } else {
      for (int i = 0; i < node.size(); i++) {
        dumpField(out, "[" + i + "]", node.get(i), indent);
      }
    }
  }

  private static void dumpField(PrintWriter out, String key, JsonNode value, String indent) {
    if (value.isContainerNode()) {
      out.println(indent + key + ":");
      dump(out, value, indent + "    ");
    } else {
      out.println(indent + key + ": " + value.asText());
    }
  }
}
