package org.jqcowfs.fuse.filesystem;

import java.util.ArrayList;
import java.util.List;

/**
 * How to mount: the {@code -o} options jqcowfs accepts, parsed once. The mount is read-only unless
 * {@code writable} ({@code --rw}), and always nosuid, nodev and default_permissions (auto_unmount
 * is accepted; a watchdog does that job).
 *
 * @param allowOther let users other than the mounting one read the files ({@code allow_other})
 * @param fsname the source shown in /proc/mounts
 * @param noexec mount noexec
 * @param noatime mount noatime
 * @param ownership the flat files' owner, group and mode ({@code uid=}, {@code gid=}, {@code
 *     umask=}); by default the top image file's owner and group and its read bits
 * @param writable mount read-write ({@code --rw}); the option {@code rw} is accepted only then
 */
public record MountOptions(
    boolean allowOther,
    String fsname,
    boolean noexec,
    boolean noatime,
    Ownership ownership,
    boolean writable) {
  /** The defaults: private to the mounting user, source "jqcowfs", ownership from the image. */
  public static final MountOptions DEFAULT =
      new MountOptions(false, "jqcowfs", false, false, Ownership.FROM_IMAGE, false);

  public MountOptions {
    if (fsname.isEmpty() || fsname.contains(",") || fsname.contains(" ")) {
      throw new IllegalArgumentException("fsname '" + fsname + "': no commas or spaces");
    }
  }

  /**
   * Parses comma-separated {@code -o} options onto these: allow_other, fsname=NAME, noexec,
   * noatime, uid=N, gid=N, umask=M (octal), and the ones that are always on (ro, nosuid, nodev,
   * default_permissions, auto_unmount).
   *
   * @throws IllegalArgumentException naming an option jqcowfs does not know or cannot honour (rw),
   *     or a value out of range
   */
  public MountOptions with(String commaSeparated) {
    boolean allow = allowOther;
    String name = fsname;
    boolean exec = noexec;
    boolean atime = noatime;
    int uid = ownership.uid();
    int gid = ownership.gid();
    int umask = ownership.umask();
    for (String o : commaSeparated.split(",")) {
      if (o.isEmpty()) {
        continue;
      }
      switch (o) {
        case "allow_other" -> allow = true;
        case "noexec" -> exec = true;
        case "noatime" -> atime = true;
        case "nosuid", "nodev", "default_permissions", "auto_unmount" -> {}
        case "ro" -> {
          if (writable) {
            throw new IllegalArgumentException("mount option 'ro' with --rw");
          }
        }
        case "rw" -> {
          if (!writable) {
            throw new IllegalArgumentException(
                "mount option 'rw': give --rw (or --overlay) to mount read-write");
          }
        }
        default -> {
          if (o.startsWith("fsname=")) {
            name = o.substring("fsname=".length());
          } else if (o.startsWith("uid=")) {
            uid = number(o, 10, 0x7fffffff);
          } else if (o.startsWith("gid=")) {
            gid = number(o, 10, 0x7fffffff);
          } else if (o.startsWith("umask=")) {
            umask = number(o, 8, 0777);
          } else {
            throw new IllegalArgumentException("unknown mount option '" + o + "'");
          }
        }
      }
    }
    return new MountOptions(allow, name, exec, atime, new Ownership(uid, gid, umask), writable);
  }

  /** These options, read-write or read-only. */
  public MountOptions withWritable(boolean on) {
    return new MountOptions(allowOther, fsname, noexec, noatime, ownership, on);
  }

  /** The value of {@code key=value} in {@code radix}, in {@code [0, max]}. */
  private static int number(String option, int radix, int max) {
    String value = option.substring(option.indexOf('=') + 1);
    try {
      int n = Integer.parseInt(value, radix);
      if (n >= 0 && n <= max) {
        return n;
      }
    } catch (NumberFormatException e) {
      // reported below
    }
    throw new IllegalArgumentException(
        "mount option '"
            + option
            + "': not a"
            + (radix == 8 ? "n octal mode" : " number")
            + " in range");
  }

  /** The option string for fusermount3 (its {@code -o}). */
  public String fusermountOptions() {
    List<String> o = new ArrayList<>(List.of(writable ? "rw" : "ro", "nosuid", "nodev"));
    o.add("fsname=" + fsname);
    o.add("subtype=jqcowfs");
    o.add("default_permissions");
    if (allowOther) {
      o.add("allow_other");
    }
    if (noexec) {
      o.add("noexec");
    }
    if (noatime) {
      o.add("noatime");
    }
    return String.join(",", o);
  }
}
