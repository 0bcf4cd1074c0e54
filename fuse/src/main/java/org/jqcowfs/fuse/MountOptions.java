package org.jqcowfs.fuse;

import java.util.ArrayList;
import java.util.List;

/**
 * How to mount: the {@code -o} options jqcowfs accepts, parsed once. The mount is always read-only,
 * nosuid, nodev and default_permissions (auto_unmount is accepted; a watchdog does that job).
 *
 * @param allowOther let users other than the mounting one read the files ({@code allow_other})
 * @param fsname the source shown in /proc/mounts
 * @param noexec mount noexec
 * @param noatime mount noatime
 */
public record MountOptions(boolean allowOther, String fsname, boolean noexec, boolean noatime) {
  /** The defaults: private to the mounting user, source "jqcowfs". */
  public static final MountOptions DEFAULT = new MountOptions(false, "jqcowfs", false, false);

  public MountOptions {
    if (fsname.isEmpty() || fsname.contains(",") || fsname.contains(" ")) {
      throw new IllegalArgumentException("fsname '" + fsname + "': no commas or spaces");
    }
  }

  /**
   * Parses comma-separated {@code -o} options onto these: allow_other, fsname=NAME, noexec,
   * noatime, and the ones that are always on (ro, nosuid, nodev, default_permissions,
   * auto_unmount).
   *
   * @throws IllegalArgumentException naming an option jqcowfs does not know or cannot honour (rw)
   */
  public MountOptions with(String commaSeparated) {
    boolean allow = allowOther;
    String name = fsname;
    boolean exec = noexec;
    boolean atime = noatime;
    for (String o : commaSeparated.split(",")) {
      if (o.isEmpty()) {
        continue;
      }
      switch (o) {
        case "allow_other" -> allow = true;
        case "noexec" -> exec = true;
        case "noatime" -> atime = true;
        case "ro", "nosuid", "nodev", "default_permissions", "auto_unmount" -> {}
        case "rw" -> throw new IllegalArgumentException("mount option 'rw': jqcowfs is read-only");
        default -> {
          if (o.startsWith("fsname=")) {
            name = o.substring("fsname=".length());
          } else {
            throw new IllegalArgumentException("unknown mount option '" + o + "'");
          }
        }
      }
    }
    return new MountOptions(allow, name, exec, atime);
  }

  /** The option string for fusermount3 (its {@code -o}). */
  String fusermountOptions() {
    List<String> o = new ArrayList<>(List.of("ro", "nosuid", "nodev"));
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
