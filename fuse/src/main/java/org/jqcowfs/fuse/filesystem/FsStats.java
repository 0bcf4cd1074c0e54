package org.jqcowfs.fuse.filesystem;

/**
 * What statfs tells: the disks' bytes, nothing free (the flat files are read-only).
 *
 * @param blocks capacity in {@code blockBytes} units
 * @param files inodes in use
 * @param blockBytes block size in bytes
 * @param nameMax longest name in bytes
 */
public record FsStats(long blocks, long files, int blockBytes, int nameMax) {}
