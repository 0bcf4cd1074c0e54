#!/usr/bin/env bash
# make demo: the bundled example chain (examples/overlay.qcow2 -> examples/base.qcow2, a GPT disk
# with an ext4 partition) read through jqcowfs: info, map, a sparse raw copy checked against
# qemu-img, and the changed file read out of the copy's ext4 partition.
set -euo pipefail
cd "$(dirname "$0")/.."
JQ=bin/jqcowfs
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "jqcowfs info --backing-chain examples/overlay.qcow2"
$JQ info --backing-chain examples/overlay.qcow2
step "jqcowfs map examples/overlay.qcow2 (where each data range comes from)"
$JQ map examples/overlay.qcow2
step "jqcowfs convert examples/overlay.qcow2 $out/disk.raw (holes stay holes)"
$JQ convert examples/overlay.qcow2 "$out/disk.raw"
ls -ls "$out/disk.raw"
echo "allocated: $(du -k "$out/disk.raw" | cut -f1) KiB of $(($(stat -c %s "$out/disk.raw") / 1024)) KiB"
qemu-img convert -O raw examples/overlay.qcow2 "$out/qemu.raw"
cmp "$out/disk.raw" "$out/qemu.raw" && echo "identical to qemu-img convert -O raw"
step "the changed file, read from the ext4 partition of the copy"
start=$(sgdisk -i 1 "$out/disk.raw" | awk '/First sector/ {print $3}')
dd if="$out/disk.raw" of="$out/part.ext4" bs=512 skip="$start" status=none
debugfs -R "cat /hello.txt" "$out/part.ext4" 2>/dev/null
echo
echo "demo done (jqcowfs mount, the flat file through FUSE, is the next milestone: see README)"
