package org.jqcowfs.fuse.filesystem;

/**
 * Who owns the flat files and who may read them, each -1 to follow the top image file ({@code -o
 * uid=N,gid=N,umask=M}, as FUSE filesystems spell them).
 *
 * @param uid st_uid of every flat file, or -1
 * @param gid st_gid of every flat file, or -1
 * @param umask permission bits taken away from 0444, or -1 for the image's read bits
 */
public record Ownership(int uid, int gid, int umask) {
  /** Everything from the image. */
  public static final Ownership FROM_IMAGE = new Ownership(-1, -1, -1);
}
