package org.jqcowfs.fuse.protocol;

/**
 * The opcodes of the Linux FUSE kernel protocol ({@code enum fuse_opcode} in the kernel's {@code
 * include/uapi/linux/fuse.h}), with the kernel's names.
 */
public enum FuseOpcode {
  FUSE_LOOKUP(1),
  FUSE_FORGET(2),
  FUSE_GETATTR(3),
  FUSE_SETATTR(4),
  FUSE_READLINK(5),
  FUSE_SYMLINK(6),
  FUSE_MKNOD(8),
  FUSE_MKDIR(9),
  FUSE_UNLINK(10),
  FUSE_RMDIR(11),
  FUSE_RENAME(12),
  FUSE_LINK(13),
  FUSE_OPEN(14),
  FUSE_READ(15),
  FUSE_WRITE(16),
  FUSE_STATFS(17),
  FUSE_RELEASE(18),
  FUSE_FSYNC(20),
  FUSE_SETXATTR(21),
  FUSE_GETXATTR(22),
  FUSE_LISTXATTR(23),
  FUSE_REMOVEXATTR(24),
  FUSE_FLUSH(25),
  FUSE_INIT(26),
  FUSE_OPENDIR(27),
  FUSE_READDIR(28),
  FUSE_RELEASEDIR(29),
  FUSE_FSYNCDIR(30),
  FUSE_GETLK(31),
  FUSE_SETLK(32),
  FUSE_SETLKW(33),
  FUSE_ACCESS(34),
  FUSE_CREATE(35),
  FUSE_INTERRUPT(36),
  FUSE_BMAP(37),
  FUSE_DESTROY(38),
  FUSE_IOCTL(39),
  FUSE_POLL(40),
  FUSE_NOTIFY_REPLY(41),
  FUSE_BATCH_FORGET(42),
  FUSE_FALLOCATE(43),
  FUSE_READDIRPLUS(44),
  FUSE_RENAME2(45),
  FUSE_LSEEK(46),
  FUSE_COPY_FILE_RANGE(47),
  FUSE_SETUPMAPPING(48),
  FUSE_REMOVEMAPPING(49),
  FUSE_SYNCFS(50),
  FUSE_TMPFILE(51),
  FUSE_STATX(52),
  /** Any opcode this table does not know: answered ENOSYS. */
  UNKNOWN(-1);

  private static final FuseOpcode[] BY_CODE = new FuseOpcode[64];

  static {
    for (FuseOpcode op : values()) {
      if (op.code >= 0) {
        BY_CODE[op.code] = op;
      }
    }
  }

  /** The kernel's number for this opcode. */
  public final int code;

  FuseOpcode(int code) {
    this.code = code;
  }

  /** The opcode numbered {@code code}, or {@link #UNKNOWN}. */
  public static FuseOpcode of(int code) {
    FuseOpcode op = code >= 0 && code < BY_CODE.length ? BY_CODE[code] : null;
    return op != null ? op : UNKNOWN;
  }

  /** Whether this opcode would change the filesystem: answered EROFS on a read-only mount. */
  public boolean writes() {
    return switch (this) {
      case FUSE_SETATTR,
              FUSE_SYMLINK,
              FUSE_MKNOD,
              FUSE_MKDIR,
              FUSE_UNLINK,
              FUSE_RMDIR,
              FUSE_RENAME,
              FUSE_LINK,
              FUSE_WRITE,
              FUSE_SETXATTR,
              FUSE_REMOVEXATTR,
              FUSE_CREATE,
              FUSE_FALLOCATE,
              FUSE_RENAME2,
              FUSE_COPY_FILE_RANGE,
              FUSE_TMPFILE ->
          true;
      default -> false;
    };
  }
}
