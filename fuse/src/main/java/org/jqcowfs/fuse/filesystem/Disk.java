package org.jqcowfs.fuse.filesystem;

import java.io.IOException;
import java.util.List;
import org.jqcowfs.chain.BackingChain;
import org.jqcowfs.io.Closeables;
import org.jqcowfs.readahead.ReadAheadImage;

/**
 * One disk to show, opened by the caller: the chain, the read-ahead image over it that READs go
 * through, and the attributes of its flat file.
 *
 * @param name the flat file's name in the root directory
 * @param chain the backing chain it shows
 * @param readAhead the read-ahead image over {@code chain}; closing it closes the chain
 * @param mtimeMillis the modification time, milliseconds since the epoch
 * @param uid st_uid
 * @param gid st_gid
 * @param permissions st_mode's permission bits
 */
public record Disk(
    String name,
    BackingChain chain,
    ReadAheadImage readAhead,
    long mtimeMillis,
    int uid,
    int gid,
    int permissions) {

  /**
   * Closes {@code disks} (their read-ahead images, which close their chains) after {@code failure},
   * to which what fails to close is added.
   */
  public static void closeAfter(List<Disk> disks, Exception failure) {
    try {
      Closeables.closeAll(disks.stream().map(Disk::readAhead).toList());
    } catch (IOException suppressed) {
      failure.addSuppressed(suppressed);
    }
  }
}
