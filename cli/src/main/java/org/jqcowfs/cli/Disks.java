package org.jqcowfs.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.chain.ChainOpener;
import org.jqcowfs.chain.ChainOptions;
import org.jqcowfs.fuse.filesystem.Disk;
import org.jqcowfs.fuse.filesystem.FlatFileSystem;
import org.jqcowfs.fuse.filesystem.Ownership;
import org.jqcowfs.readahead.ReadAheadImage;
import org.jqcowfs.remote.HttpLocation;
import org.jqcowfs.remote.S3Location;
import org.jqcowfs.storage.Location;

/**
 * Opens the disks a mount shows: each image with its chain, wrapped in read-ahead windows as large
 * as the mount's readahead ({@link FlatFileSystem#READ_AHEAD_KIB}), its flat file named and owned
 * as the image file is (or as the options say).
 */
final class Disks {
  private Disks() {}

  /** The user running the mount: the owner of a remote image's flat file. */
  private record User(int uid, int gid) {}

  private static final User USER = user();

  private static User user() {
    com.sun.security.auth.module.UnixSystem u = new com.sun.security.auth.module.UnixSystem();
    return new User((int) u.getUid(), (int) u.getGid());
  }

  /** The image's file name: a local path's last element, a URL's last segment (decoded). */
  static String fileName(Location image) {
    String n =
        image
            .localPath()
            .map(p -> p.getFileName().toString())
            .orElseGet(
                () ->
                    image instanceof HttpLocation h
                        ? h.fileName()
                        : image instanceof S3Location s ? s.fileName() : image.toString());
    n = n.replace('/', '_');
    return n.isEmpty() ? "disk" : n;
  }

  /**
   * Opens every image with its chain and names its flat file: {@code name} when given (one image
   * only), else the image's file name (a URL's last segment) with its extension replaced by {@code
   * .raw} ({@link FlatFileSystem#rawName}). The flat file's mtime is the image file's; its owner,
   * group and read bits are the image file's unless {@code ownership} says otherwise (a remote
   * image's: the mounting user's, and the mount's time); the write bits only when the chain is
   * writable.
   *
   * @throws IllegalArgumentException if {@code name} is given for several images, or is not a file
   *     name
   * @throws IOException if an image or a backing file is refused or cannot be read; the disks
   *     opened so far are closed
   */
  static List<Disk> open(
      List<Location> images, String name, ChainOptions options, Ownership ownership)
      throws IOException {
    if (name != null && images.size() != 1) {
      throw new IllegalArgumentException("--name needs exactly one image, not " + images.size());
    }
    if (name != null) {
      FlatFileSystem.checkName(name); // before anything is opened
    }
    List<Disk> disks = new ArrayList<>();
    try {
      for (Location image : images) {
        BackingChain chain = ChainOpener.open(image, options);
        try {
          int bits = chain.writable() ? 0666 : 0444; // the write bits only on a writable mount
          Path local = image.localPath().orElse(null);
          // a remote image has no owner or mtime here: the mounting user's, and the mount's time
          disks.add(
              new Disk(
                  name != null ? name : FlatFileSystem.rawName(Path.of(fileName(image))),
                  chain,
                  new ReadAheadImage(chain, FlatFileSystem.READ_AHEAD_KIB * 1024L),
                  local != null
                      ? Files.getLastModifiedTime(local).toMillis()
                      : System.currentTimeMillis(),
                  ownership.uid() >= 0
                      ? ownership.uid()
                      : local != null
                          ? (Integer) Files.getAttribute(local, "unix:uid")
                          : USER.uid(),
                  ownership.gid() >= 0
                      ? ownership.gid()
                      : local != null
                          ? (Integer) Files.getAttribute(local, "unix:gid")
                          : USER.gid(),
                  ownership.umask() >= 0
                      ? bits & ~ownership.umask()
                      : local != null
                          ? bits & (Integer) Files.getAttribute(local, "unix:mode")
                          : bits));
        } catch (IOException | RuntimeException e) {
          chain.close();
          throw e;
        }
      }
    } catch (IOException | RuntimeException e) {
      Disk.closeAfter(disks, e);
      throw e;
    }
    return disks;
  }
}
