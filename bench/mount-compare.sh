#!/usr/bin/env bash
# Reading through the mount: jqcowfs mount against qemu-storage-daemon --export type=fuse, same
# images (bench/cache, built by bench/run.sh). Each read is on a fresh mount. Cold (default): the
# page cache is dropped first, so the disk counts. WARM=1: the image file is read into the page
# cache first, so the server's own work counts. Prints MB/s of `dd bs=1M` and the time of
# `cp --sparse=always` to tmpfs, and checks each copy against qemu-img convert (sha256).
# Usage: [WARM=1] bench/mount-compare.sh [IMAGE...]   (as root)
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${BENCH_CACHE:-$PWD/bench/cache}
OUT=${BENCH_OUT:-/dev/shm/jqcowfs-mount-bench}
WARM=${WARM:-0}
mkdir -p "$OUT/mnt"
images=("$@")
[ ${#images[@]} -gt 0 ] || images=("$CACHE"/os-plain.qcow2 "$CACHE"/os-deflate.qcow2 "$CACHE"/os-zstd.qcow2)
qsd_pid=""
cleanup() {
  set +e
  mountpoint -q "$OUT/mnt" && bin/jqcowfs unmount "$OUT/mnt"
  [ -n "$qsd_pid" ] && kill "$qsd_pid" && wait "$qsd_pid" 2>/dev/null
  rm -rf "$OUT"
}
trap cleanup EXIT
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

# start SERVER IMAGE: mounts it; $file is the flat file
start() {
  if [ "$1" = jqcowfs ]; then
    bin/jqcowfs mount "$2" "$OUT/mnt" 2>/dev/null
    file="$OUT/mnt/$(basename "${2%.*}").raw"
  else
    : > "$OUT/qsd.raw"
    qemu-storage-daemon --blockdev "driver=file,node-name=file,filename=$2,read-only=on" \
      --blockdev driver=qcow2,node-name=fmt,file=file,read-only=on \
      --export "type=fuse,id=exp,node-name=fmt,mountpoint=$OUT/qsd.raw" >/dev/null 2>&1 &
    qsd_pid=$!
    for _ in $(seq 100); do mountpoint -q "$OUT/qsd.raw" && break; sleep 0.1; done
    file="$OUT/qsd.raw"
  fi
}
stop() {
  if [ "$1" = jqcowfs ]; then bin/jqcowfs unmount "$OUT/mnt"; sleep 0.2
  else kill "$qsd_pid"; wait "$qsd_pid" 2>/dev/null || true; qsd_pid=""; fi
}
prepare() { sync; echo 3 > /proc/sys/vm/drop_caches; [ "$WARM" = 1 ] && cat "$1" > /dev/null; true; }

echo "| image | server | dd bs=1M MB/s | cp --sparse=always s |  ($([ "$WARM" = 1 ] && echo warm || echo cold) host cache)"
echo "|---|---|---|---|"
for img in "${images[@]}"; do
  qemu-img convert -O raw "$img" "$OUT/ref.raw"
  want=$(sha256sum "$OUT/ref.raw" | cut -d' ' -f1); rm -f "$OUT/ref.raw"
  for server in jqcowfs qemu-storage-daemon; do
    prepare "$img"; start $server "$img"
    size=$(stat -c %s "$file"); dd_s=$(secs dd if="$file" of=/dev/null bs=1M); stop $server
    prepare "$img"; start $server "$img"
    cp_s=$(secs cp --sparse=always "$file" "$OUT/copy.raw"); stop $server
    sum=$(sha256sum "$OUT/copy.raw" | cut -d' ' -f1); rm -f "$OUT/copy.raw"
    [ "$sum" = "$want" ] || { echo "$server: copy of $img differs from qemu-img convert" >&2; exit 1; }
    printf '| %s | %s | %.0f | %.2f |\n' "$(basename "$img")" $server \
      "$(echo "$size / $dd_s / 1000000" | bc -l)" "$cp_s"
  done
done
