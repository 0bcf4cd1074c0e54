package org.jqcowfs.fuse.filesystem;

/**
 * What stat tells of an inode: the policy both backends encode.
 *
 * @param inode the inode number
 * @param size st_size in bytes
 * @param blocks st_blocks, 512-byte units
 * @param mtimeMillis st_mtime (and atime, ctime), milliseconds since the epoch
 * @param mode file type and permissions
 * @param nlink links
 * @param uid owner
 * @param gid group
 */
public record Attributes(
    long inode, long size, long blocks, long mtimeMillis, int mode, int nlink, int uid, int gid) {}
