#!/usr/bin/env bash
# make bench-write: jqcowfs mount --rw against qemu-storage-daemon --export type=fuse,writable=on,
# on the same images, side by side in one run; prints a table of medians with the ratio.
#
#   alloc     fio 4 KiB random writes, 2 jobs, libaio iodepth 16, O_DIRECT, FIO_SECONDS, on a
#             fully allocated 4 GiB image (preallocation=full: writes land in place)       (IOPS)
#   overlay   the same on an empty overlay over bench/cache/os-plain.qcow2 (every write
#             allocates a cluster and copies the rest of it from the backing file)        (IOPS)
#   fsync     fio 4 KiB random writes with fsync after each, iodepth 1, on the allocated image,
#             and on a preallocated raw file (no server: the file system's own figure)
#   dd        dd bs=1M oflag=direct conv=fsync of 2 GiB into an empty image (seconds), and the
#             same dd into a raw file on the same host file system
#   mkfs      the metadata-preallocation seed's experiment: the flat file loop-mounted,
#             mkfs.ext4, then 256 MiB written to a file in 2 MiB chunks and synced (seconds of
#             mkfs, mount, write and sync; the write's background work after mkfs makes a
#             window of the write alone noisy), for a sparse qcow2, a metadata-preallocated
#             qcow2 and a raw file, MKFS_REPS times a run (its spread on this disk, 0.3-1 s
#             for one configuration, is wider than the differences it looks for)
# The allocated image is preallocation=full (its clusters are host blocks, not holes).
# Images live in WRITE_DIR (default bench/cache/write, on disk: fsync costs what it costs there);
# the fsync row runs again with the images on tmpfs (TMPFS_DIR), which measures the CPU path.
# Each measure is the median of RUNS runs; the tools alternate which goes first. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JQ=$ROOT/bin/jqcowfs
DIR=${WRITE_DIR:-$ROOT/bench/cache/write}
RUNS=${RUNS:-3}
MKFS_REPS=${MKFS_REPS:-3}
FIO_SECONDS=${FIO_SECONDS:-20}
OS_IMAGE=${OS_IMAGE:-$ROOT/bench/cache/os-plain.qcow2}
MNT=$DIR/mnt
QSD_FILE=$DIR/qsd.raw
TMPFS_DIR=${TMPFS_DIR:-/dev/shm/jqcowfs-bench-write}
IMG=$DIR/t.qcow2
FMT=qcow2
mkdir -p "$DIR" "$MNT"
qsd_pid=""
loop_dev=""
cleanup() {
  for d in "$DIR" "$TMPFS_DIR"; do
    mountpoint -q "$d/ext" && umount "$d/ext" || true
  done
  [ -n "$loop_dev" ] && losetup -d "$loop_dev" || true
  for d in "$DIR" "$TMPFS_DIR"; do
    mountpoint -q "$d/mnt" && "$JQ" unmount "$d/mnt" || true
  done
  [ -n "$qsd_pid" ] && kill "$qsd_pid" 2>/dev/null || true
  rm -rf "$TMPFS_DIR"
  # the last measure's image (up to 4 GiB of blocks, preallocation=full) is not left behind
  rm -f "$DIR/t.qcow2" "$DIR/t.img" "$DIR/t.raw" "$DIR/mount.err" "$QSD_FILE"
}
trap cleanup EXIT
log() { echo "$*" >&2; }

# fresh KIND: makes the image of a measure in $IMG (format $FMT): alloc, overlay, empty, meta
# (preallocation=metadata) or raw (a sparse raw file)
fresh() {
  rm -f "$DIR/t.qcow2" "$DIR/t.img"
  IMG=$DIR/t.qcow2 FMT=qcow2
  case $1 in
    alloc) qemu-img create -q -f qcow2 -o preallocation=full "$IMG" 4G ;;
    overlay) qemu-img create -q -f qcow2 -b "$OS_IMAGE" -F qcow2 "$IMG" ;;
    empty) qemu-img create -q -f qcow2 "$IMG" 4G ;;
    meta) qemu-img create -q -f qcow2 -o preallocation=metadata "$IMG" 4G ;;
    raw) IMG=$DIR/t.img FMT=raw && truncate -s 4G "$IMG" ;;
    rawalloc) IMG=$DIR/t.img FMT=raw && qemu-img create -q -f raw -o preallocation=full "$IMG" 4G ;;
  esac
}

# on_tmpfs CMD...: CMD with the images on tmpfs (call it in a subshell)
on_tmpfs() {
  DIR=$TMPFS_DIR MNT=$TMPFS_DIR/mnt QSD_FILE=$TMPFS_DIR/qsd.raw
  mkdir -p "$MNT"
  "$@"
}

# mount_jq / mount_qsd: the writable flat file of $IMG in $file
mount_jq() {
  # the overlay's backing file is outside its directory: allowed by name, as a user would
  "$JQ" mount ${JQ_MOUNT_OPTS:-} --rw --format "$FMT" --allow-dir "$(dirname "$OS_IMAGE")" ${JQ_EXTRA:-} \
    "$IMG" "$MNT" >/dev/null 2>"$DIR/mount.err"
  mountpoint -q "$MNT" || { log "jqcowfs did not mount $IMG: $(cat "$DIR/mount.err")"; exit 1; }
  file=$MNT/t.raw
}
umount_jq() { "$JQ" unmount "$MNT"; }
mount_qsd() {
  : > "$QSD_FILE"
  qemu-storage-daemon --blockdev "driver=file,node-name=file,filename=$IMG" \
    --blockdev "driver=$FMT,node-name=fmt,file=file" \
    --export "type=fuse,id=exp,node-name=fmt,mountpoint=$QSD_FILE,writable=on" >/dev/null 2>&1 &
  qsd_pid=$!
  for _ in $(seq 200); do mountpoint -q "$QSD_FILE" && break; sleep 0.05; done
  mountpoint -q "$QSD_FILE" || { log "qemu-storage-daemon did not export $IMG"; exit 1; }
  file=$QSD_FILE
}
umount_qsd() { kill "$qsd_pid"; wait "$qsd_pid" 2>/dev/null || true; qsd_pid=""; }
# mount_raw: no server, the image file itself (the ceiling of a measure on this file system)
mount_raw() { file=$IMG; }
umount_raw() { :; }

# checked: qemu-img check of $IMG after a measure (a raw image has nothing to check)
checked() {
  [ "$FMT" = raw ] || qemu-img check -q "$IMG" || { log "qemu-img check failed: $*"; exit 1; }
}

# fio_iops SERVER KIND EXTRA...: write IOPS of a fresh image, checked by qemu-img check after
fio_iops() {
  local server=$1 kind=$2; shift 2
  fresh "$kind"; "mount_$server"
  sync # the image just made is on the disk before the clock starts
  local iops
  iops=$(fio --name=w --filename="$file" --rw=randwrite --bs=4k --direct=1 --ioengine=libaio \
    --time_based --runtime="$FIO_SECONDS" --size=3G --group_reporting --output-format=json "$@" |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["write"]["iops"]))')
  "umount_$server"
  checked "$server $kind"
  echo "$iops"
}

# dd_seconds TARGET: seconds of dd of 2 GiB (1 MiB, O_DIRECT, fsync) into jq, qsd or raw
dd_seconds() {
  local t0 t
  if [ "$1" = raw ]; then rm -f "$DIR/t.raw"; file=$DIR/t.raw; else fresh empty; "mount_$1"; fi
  sync # the deletes and writes of the measures before are not this dd's to pay for
  t0=$(date +%s.%N)
  dd if=/dev/zero of="$file" bs=1M count=2048 oflag=direct conv=fsync,notrunc status=none
  t=$(echo "$(date +%s.%N) - $t0" | bc)
  [ "$1" = raw ] && rm -f "$DIR/t.raw" || "umount_$1"
  printf '%.2f\n' "$t"
}

# mkfs_seconds SERVER KIND: the seed's experiment on a fresh image of KIND (seconds)
mkfs_seconds() {
  local t0 t
  trap cleanup EXIT # a subshell: the loop device and mounts are its own
  fresh "$2"; "mount_$1"
  loop_dev=$(losetup -f --show "$file")
  mkdir -p "$DIR/ext"
  sync # nothing of the runs before in the host's dirty pages
  t0=$(date +%s.%N)
  mkfs.ext4 -q -F "$loop_dev"
  mount "$loop_dev" "$DIR/ext"
  dd if=/dev/zero of="$DIR/ext/f" bs=2M count=128 conv=fsync status=none
  t=$(echo "$(date +%s.%N) - $t0" | bc)
  umount "$DIR/ext"
  losetup -d "$loop_dev"
  loop_dev=""
  "umount_$1"
  checked "$1 mkfs $2"
  printf '%.2f\n' "$t"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

# the overlay rows copy from the OS image: warm for both tools, or the first run's first tool
# alone reads it from the disk (26-27k IOPS against 66-78k in the runs after it)
cat "$OS_IMAGE" >/dev/null

declare -A res
# Each measure runs for both tools back to back (the disk's speed drifts over minutes), the first
# of them alternating from run to run.
for run in $(seq "$RUNS"); do
  order=(jq qsd); [ $((run % 2)) = 0 ] && order=(qsd jq)
  for s in "${order[@]}"; do res[alloc_$s]+="$(fio_iops "$s" alloc --numjobs=2 --iodepth=16) "; done
  for s in "${order[@]}"; do
    res[overlay_$s]+="$(fio_iops "$s" overlay --numjobs=2 --iodepth=16) "
  done
  # the fsync rows with the raw file beside them: what the file system gives without a server
  for s in "${order[@]}" raw; do
    k=alloc; [ "$s" = raw ] && k=rawalloc
    res[fsync_$s]+="$(fio_iops "$s" "$k" --numjobs=1 --iodepth=1 --fsync=1) "
    res[fsynctmpfs_$s]+="$(on_tmpfs fio_iops "$s" "$k" --numjobs=1 --iodepth=1 --fsync=1) "
  done
  # the kinds rotate: the first after a large delete pays for the host's cleanup
  kinds=(empty meta raw)
  for i in $(seq 0 $((3 * MKFS_REPS - 1))); do
    k=${kinds[$(((i + run) % 3))]}
    for s in "${order[@]}"; do res[mkfs${k}_$s]+="$(mkfs_seconds "$s" "$k") "; done
  done
  # the three dd targets rotate too: the first of them runs slowest on this disk
  targets=(jq qsd raw)
  for i in 0 1 2; do
    t=${targets[$(((i + run) % 3))]}
    res[dd_$t]+="$(dd_seconds "$t") "
  done
  log "run $run: ${res[*]}"
done
printf '| measure | jqcowfs | qemu-storage-daemon | ratio | all runs (jq / qsd) |\n|---|---|---|---|---|\n'
for m in alloc overlay fsync fsynctmpfs; do
  j=$(echo "${res[${m}_jq]}" | tr ' ' '\n' | grep . | median)
  q=$(echo "${res[${m}_qsd]}" | tr ' ' '\n' | grep . | median)
  raw=""
  if [ -n "${res[${m}_raw]:-}" ]; then
    r=$(echo "${res[${m}_raw]}" | tr ' ' '\n' | grep . | median)
    raw=" (raw file $r: jq $(printf '%.2f' "$(echo "$j / $r" | bc -l)")x)"
  fi
  printf '| %s IOPS | %s | %s | %.2fx%s | %s/ %s%s|\n' "$m" "$j" "$q" "$(echo "$j / $q" | bc -l)" \
    "$raw" "${res[${m}_jq]}" "${res[${m}_qsd]}" "${res[${m}_raw]:+/ raw ${res[${m}_raw]}}"
done
j=$(echo "${res[dd_jq]}" | tr ' ' '\n' | grep . | median)
q=$(echo "${res[dd_qsd]}" | tr ' ' '\n' | grep . | median)
r=$(echo "${res[dd_raw]}" | tr ' ' '\n' | grep . | median)
printf '| dd 2 GiB s | %s | %s | %.2fx (raw %s s: %.2fx) | %s/ %s/ raw %s|\n' "$j" "$q" \
  "$(echo "$q / $j" | bc -l)" "$r" "$(echo "$r / $j" | bc -l)" "${res[dd_jq]}" "${res[dd_qsd]}" \
  "${res[dd_raw]}"
printf '\n| mkfs.ext4, mount, 256 MiB + sync, s | jqcowfs | qemu-storage-daemon | ratio | all runs (jq / qsd) |\n'
printf '|---|---|---|---|---|\n'
for k in empty meta raw; do
  j=$(echo "${res[mkfs${k}_jq]}" | tr ' ' '\n' | grep . | median)
  q=$(echo "${res[mkfs${k}_qsd]}" | tr ' ' '\n' | grep . | median)
  printf '| %s | %s | %s | %.2fx | %s/ %s|\n' "$k" "$j" "$q" "$(echo "$q / $j" | bc -l)" \
    "${res[mkfs${k}_jq]}" "${res[mkfs${k}_qsd]}"
done
je=$(echo "${res[mkfsempty_jq]}" | tr ' ' '\n' | grep . | median)
jm=$(echo "${res[mkfsmeta_jq]}" | tr ' ' '\n' | grep . | median)
jr=$(echo "${res[mkfsraw_jq]}" | tr ' ' '\n' | grep . | median)
printf '\njqcowfs sparse / preallocated: %.2f; sparse / raw: %.2f\n' "$(echo "$je / $jm" | bc -l)" \
  "$(echo "$je / $jr" | bc -l)"
