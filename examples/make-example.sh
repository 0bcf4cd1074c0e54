#!/usr/bin/env bash
# How examples/base.qcow2 and examples/overlay.qcow2 were made (they are committed; this script
# documents them and can remake them). Needs qemu-utils, gdisk, e2fsprogs.
#   base.qcow2:    64 MiB GPT disk, partition 1 = ext4 holding a few files; deflate-compressed.
#   overlay.qcow2: backed by base.qcow2 (format qcow2), changes /hello.txt.
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/files/docs"
echo "Hello from the base image." > "$work/files/hello.txt"
seq 1 20000 > "$work/files/docs/numbers.txt"
head -c 300000 /dev/urandom > "$work/files/docs/random.bin"
cp /etc/os-release "$work/files/docs/os-release"
truncate -s 64M "$work/disk.raw"
sgdisk -n 1:2048:0 -t 1:8300 -c 1:data "$work/disk.raw" >/dev/null
last=$(sgdisk -i 1 "$work/disk.raw" | awk '/Last sector/ {print $3}')
truncate -s $(((last - 2048 + 1) * 512)) "$work/part.ext4"
mkfs.ext4 -q -F -L jqcowfs-demo -d "$work/files" "$work/part.ext4"
dd if="$work/part.ext4" of="$work/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
rm -f base.qcow2 overlay.qcow2
qemu-img convert -c -O qcow2 "$work/disk.raw" base.qcow2
# The overlay: the same disk with /hello.txt changed, keeping only the 64 KiB clusters that differ.
cp "$work/disk.raw" "$work/before.raw"
echo "Hello from the overlay: this file was changed." > "$work/hello2.txt"
debugfs -w -R "rm /hello.txt" "$work/part.ext4" >/dev/null 2>&1
debugfs -w -R "write $work/hello2.txt /hello.txt" "$work/part.ext4" >/dev/null 2>&1
dd if="$work/part.ext4" of="$work/disk.raw" bs=1M seek=1 conv=notrunc status=none
qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2 64M
python3 - "$work/before.raw" "$work/disk.raw" > "$work/cmds" <<'PY'
import sys
a, b = open(sys.argv[1], 'rb'), open(sys.argv[2], 'rb')
off = 0
while True:
    x, y = a.read(65536), b.read(65536)
    if not x:
        break
    if x != y:
        print(f"write -q -s {sys.argv[2]}.{off} {off} {len(y)}")
        open(f"{sys.argv[2]}.{off}", 'wb').write(y)
    off += len(x)
PY
args=(); while read -r line; do args+=(-c "$line"); done < "$work/cmds"
qemu-io -f qcow2 "${args[@]}" overlay.qcow2
qemu-img info --backing-chain overlay.qcow2
