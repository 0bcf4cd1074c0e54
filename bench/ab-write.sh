#!/usr/bin/env bash
# A/B of one bench-write row between builds, interleaved (the order turns each round):
#   bash bench/ab-write.sh alloc|fsynctmpfs ROUNDS BUILD_DIR...
# Each BUILD_DIR is a built tree (bin/jqcowfs, cli/target/jqcowfs.jsa), e.g. a git worktree of an
# older commit after `mvn -o package -DskipTests && bin/cds-archive bin/jqcowfs cli/target/jqcowfs.jsa`.
# BUILD_DIR+bitmaps: that build on an image with three enabled persistent dirty bitmaps (512 B,
# 64 KiB and 16 MiB granularity), which the mount keeps; their bits are checked to be set after.
#   alloc       fio 4 KiB randwrite 2 jobs x QD16, 20 s, preallocation=full image on disk
#   fsynctmpfs  fio 4 KiB randwrite + fsync, QD1, 20 s, preallocation=full image on tmpfs
# Prints "build IOPS" per run; every image is checked with qemu-img check after its run.
set -euo pipefail
kind=$1 rounds=$2; shift 2
builds=("$@")
case $kind in
  alloc) dir=$(dirname "$0")/cache/ab fio_opts="--numjobs=2 --iodepth=16" ;;
  fsynctmpfs) dir=/dev/shm/jqcowfs-ab fio_opts="--numjobs=1 --iodepth=1 --fsync=1" ;;
  *) echo "kind: alloc or fsynctmpfs" >&2; exit 2 ;;
esac
mkdir -p "$dir/mnt"
trap 'mountpoint -q "$dir/mnt" && umount "$dir/mnt"; rm -rf "$dir"' EXIT
run() {
  local build=${1%+bitmaps}
  rm -f "$dir/t.qcow2"
  qemu-img create -q -f qcow2 -o preallocation=full "$dir/t.qcow2" 4G
  if [ "$build" != "$1" ]; then
    for g in 512 65536 16M; do qemu-img bitmap --add -g "$g" "$dir/t.qcow2" "g$g"; done
  fi
  sync
  "$build/bin/jqcowfs" mount --rw "$dir/t.qcow2" "$dir/mnt" 2>/dev/null
  # shellcheck disable=SC2086
  iops=$(fio --name=w --filename="$dir/mnt/t.raw" --rw=randwrite --bs=4k --direct=1 \
    --ioengine=libaio --time_based --runtime=20 --size=3G $fio_opts --group_reporting \
    --output-format=json | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))')
  "$build/bin/jqcowfs" unmount "$dir/mnt"
  qemu-img check -q "$dir/t.qcow2"
  if [ "$build" != "$1" ] && ! qemu-img info "$dir/t.qcow2" | grep -q 'name: g512'; then
    echo "$1: the bitmaps were lost" >&2; exit 1
  fi
  echo "$1 $iops"
}
for ((r = 0; r < rounds; r++)); do
  for b in "${builds[@]}"; do run "$b"; done
  mapfile -t builds < <(printf '%s\n' "${builds[@]}" | tac)
done
