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

/**
 * Opens the disks a mount shows: each image with its chain, wrapped in read-ahead windows as large
 * as the mount's readahead ({@link FlatFileSystem#READ_AHEAD_KIB}), its flat file named and owned
 * as the image file is (or as the options say).
 */
final class Disks {
  private Disks() {}

  /**
   * Opens every image with its chain and names its flat file: {@code name} when given (one image
   * only), else the image's file name with its extension replaced by {@code .raw} ({@link
   * FlatFileSystem#rawName}). The flat file's mtime is the image file's; its owner, group and read
   * bits are the image file's unless {@code ownership} says otherwise; the write bits only when the
   * chain is writable.
   *
   * @throws IllegalArgumentException if {@code name} is given for several images, or is not a file
   *     name
   * @throws IOException if an image or a backing file is refused or cannot be read; the disks
   *     opened so far are closed
   */
  static List<Disk> open(List<Path> images, String name, ChainOptions options, Ownership ownership)
      throws IOException {
    if (name != null && images.size() != 1) {
      throw new IllegalArgumentException("--name needs exactly one image, not " + images.size());
    }
    if (name != null) {
      FlatFileSystem.checkName(name); // before anything is opened
    }
    List<Disk> disks = new ArrayList<>();
    try {
      for (Path image : images) {
        BackingChain chain = ChainOpener.open(image, options);
        try {
          int bits = chain.writable() ? 0666 : 0444; // the write bits only on a writable mount
          disks.add(
              new Disk(
                  name != null ? name : FlatFileSystem.rawName(image),
                  chain,
                  new ReadAheadImage(chain, FlatFileSystem.READ_AHEAD_KIB * 1024L),
                  Files.getLastModifiedTime(image).toMillis(),
                  ownership.uid() >= 0
                      ? ownership.uid()
                      : (Integer) Files.getAttribute(image, "unix:uid"),
                  ownership.gid() >= 0
                      ? ownership.gid()
                      : (Integer) Files.getAttribute(image, "unix:gid"),
                  ownership.umask() >= 0
                      ? bits & ~ownership.umask()
                      : bits & (Integer) Files.getAttribute(image, "unix:mode")));
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
