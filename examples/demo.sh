#!/usr/bin/env bash
# make demo: the bundled example chain (examples/overlay.qcow2 -> examples/base.qcow2, a compressed
# GPT disk with an ext4 partition; the overlay changes /hello.txt) mounted with jqcowfs: the flat
# file and its map, a sparse copy checked against qemu-img, the ext4 partition loop-mounted
# read-only (as root) to print the changed file, and the unmount.
set -euo pipefail
cd "$(dirname "$0")/.."
JQ=bin/jqcowfs
work=$(mktemp -d)
mnt="$work/mnt"
ext4="$work/ext4"
mkdir -p "$mnt" "$ext4"
loop=""
cleanup() {
  set +e
  mountpoint -q "$ext4" && umount "$ext4"
  [ -n "$loop" ] && losetup -d "$loop"
  mountpoint -q "$mnt" && $JQ unmount "$mnt"
  rm -rf "$work"
}
trap cleanup EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "jqcowfs info --backing-chain examples/overlay.qcow2"
$JQ info --backing-chain examples/overlay.qcow2

step "jqcowfs mount examples/overlay.qcow2 $mnt"
$JQ mount examples/overlay.qcow2 "$mnt"
grep " $mnt " /proc/self/mounts
ls -ls "$mnt"
echo "st_size $(stat -c %s "$mnt/overlay.raw") bytes, st_blocks x 512 = $(($(stat -c %b "$mnt/overlay.raw") * 512)) bytes of data"

step "jqcowfs map examples/overlay.qcow2 (where each data range comes from)"
$JQ map examples/overlay.qcow2

step "cp --sparse=always $mnt/overlay.raw $work/copy.raw (SEEK_DATA/SEEK_HOLE: holes are not read)"
cp --sparse=always "$mnt/overlay.raw" "$work/copy.raw"
echo "copy: $(du -k "$work/copy.raw" | cut -f1) KiB allocated of $(($(stat -c %s "$work/copy.raw") / 1024)) KiB"
qemu-img convert -O raw examples/overlay.qcow2 "$work/qemu.raw"
cmp "$work/copy.raw" "$work/qemu.raw" && echo "identical to qemu-img convert -O raw"

step "the changed file, from the ext4 partition inside the flat file"
first=$(sgdisk -i 1 "$mnt/overlay.raw" | awk '/First sector/ {print $3}')
last=$(sgdisk -i 1 "$mnt/overlay.raw" | awk '/Last sector/ {print $3}')
if [ "$(id -u)" = 0 ]; then
  loop=$(losetup -r -f --show -o $((first * 512)) --sizelimit $(((last - first + 1) * 512)) "$mnt/overlay.raw")
  echo "losetup -r: $loop; mount -o ro $loop $ext4"
  mount -t ext4 -o ro,noload "$loop" "$ext4"
  ls "$ext4"
  echo "--- /hello.txt:"
  cat "$ext4/hello.txt"
  umount "$ext4"
  losetup -d "$loop"
  loop=""
else
  echo "(not root: no loop device; reading the partition with debugfs instead)"
  dd if="$mnt/overlay.raw" of="$work/part.ext4" bs=512 skip="$first" count=$((last - first + 1)) status=none
  debugfs -R "cat /hello.txt" "$work/part.ext4" 2>/dev/null
fi

step "jqcowfs unmount $mnt"
$JQ unmount "$mnt"
for _ in $(seq 50); do mountpoint -q "$mnt" || break; sleep 0.1; done
mountpoint -q "$mnt" && { echo "still mounted" >&2; exit 1; }
echo "unmounted; demo done"
