#!/usr/bin/env bash
# make bench: jqcowfs against qemu-img convert and qemu-storage-daemon --export type=fuse, on the
# same images, side by side in one run. Prints and writes bench/results.md and bench/results.json.
#
# Images (built once into bench/cache):
#   os-{plain,deflate,zstd}.qcow2  4 GiB GPT disk, ext4 partition filled with ~3 GB of this
#                                  machine's /usr; 64 KiB clusters
#   frag.qcow2, inorder.qcow2      4 GiB fully written, 64 KiB at a time, in random order / in order
#                                  (same guest bytes; host clusters allocated in write order)
#   tb.qcow2                       1 TiB virtual disk holding 64 MiB of /usr data in 64 places
#   pa16g.qcow2                    16 GiB, preallocation=metadata, 512 MiB of /usr data in 2 runs
#   pa1t.qcow2, pa4t.qcow2         1 TiB and 4 TiB, preallocation=metadata, 3 MiB of data
#
# Measured (each the median of RUNS runs; the two tools of a pair run one after the other, which
# goes first alternating from run to run, so an even RUNS gives each order the same weight):
#   convert   jqcowfs convert -m 8  vs  qemu-img convert -O raw -m 8 -W          (seconds)
#   cp        cp --sparse=always from a jqcowfs mount / a qemu-storage-daemon export, and
#             qemu-img convert -O raw -m 8 -W                                     (seconds)
#   fio       4 KiB random reads, 2 jobs, libaio iodepth 16, O_DIRECT, FIO_SECONDS  (IOPS)
#   frag      dd bs=1M through a jqcowfs mount, fragmented vs in-order image, cold host cache
#   mount     jqcowfs mount until the first 4 KiB of the flat file reads (image cached, and for
#             the preallocated images also cold); daemon peak RSS (VmHWM)
#   sparse    the 16 GiB preallocated image: cp from both mounts, both converts
# Every copy and conversion is checked against qemu-img convert's output (a SHA-256 of the content
# that skips holes and zero blocks, so a 1 TiB file hashes in the time of its data).
# Output goes to tmpfs. The image files are read into the page cache before each run (cold for
# frag), and each tool has run once, so the disk does not decide the result (PREWARM_MIB also
# touches memory before each run, see prewarm). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${BENCH_CACHE:-$ROOT/bench/cache}
OUT=${BENCH_OUT:-/dev/shm/jqcowfs-bench}
RUNS=${RUNS:-4}
FIO_SECONDS=${FIO_SECONDS:-20}
CP_TIMEOUT=${CP_TIMEOUT:-300}
PREWARM_MIB=${PREWARM_MIB:-8192}
TARGET_BYTES=${TARGET_BYTES:-3000000000}
# A slice for a quick look: KINDS=zstd runs only the OS-image measures of those kinds and prints
# them (bench/results.* and docs/performance.md are left as they are); KINDS=sparse runs only the
# preallocated images' measures (the sparse and mount tables for them) and prints them
KINDS=${KINDS:-plain deflate zstd}
JQ="$ROOT/bin/jqcowfs"
MNT="$OUT/mnt"
QSD_FILE="$OUT/qsd.raw"
qsd_pid=""
mkdir -p "$CACHE" "$MNT"

cleanup() {
  set +e
  mountpoint -q "$MNT" && "$JQ" unmount "$MNT"
  [ -n "$qsd_pid" ] && kill "$qsd_pid" && wait "$qsd_pid" 2>/dev/null
  mountpoint -q "$QSD_FILE" && fusermount3 -u "$QSD_FILE"
  rm -rf "$OUT"
}
trap cleanup EXIT

log() { echo "bench: $*" >&2; }
# keep NAME VALUE: logs one measurement and prints it (for "x+=($(keep ...))")
keep() { log "  $1: $2"; echo "$2"; }

# ---------------------------------------------------------------------------------------------
# images

# stage_usr, build_os_images (shared with bench/remote.sh)
source "$ROOT/bench/os-images.sh"

# The same 4 GiB written 64 KiB at a time: in guest order, and in a random (fixed-seed) order.
build_frag_images() {
  [ -f "$CACHE/frag.qcow2" ] && return
  log "building the fragmented and in-order images (once)"
  local n=$((4 * 1024 * 16)) name seed
  for name in inorder frag; do
    seed=""; [ $name = frag ] && seed=1
    rm -f "$CACHE/$name.tmp"
    qemu-img create -q -f qcow2 "$CACHE/$name.tmp" 4G
    python3 -c "import random,sys; o=list(range($n)); '$seed' and random.Random($seed).shuffle(o); print(*o, sep='\n')" |
      awk '{printf "write -q -P %d %.0f 64k\n", ($1 * 7) % 255 + 1, $1 * 65536}' |
      qemu-io -f qcow2 "$CACHE/$name.tmp" >/dev/null
    mv "$CACHE/$name.tmp" "$CACHE/$name.qcow2"
  done
}

# 1 TiB virtual disk, 64 MiB of /usr data in 64 slices of 1 MiB spread over the whole disk.
build_tb_image() {
  [ -f "$CACHE/tb.qcow2" ] && return
  log "building the 1 TiB image (once)"
  local raw="$CACHE/tb.raw" i
  rm -f "$raw"; truncate -s 1T "$raw"
  (find /usr/lib -type f -size +1M | head -200 | xargs cat | head -c $((64 << 20))) \
    > "$CACHE/tb.data" 2>/dev/null || true
  for i in $(seq 0 63); do
    dd if="$CACHE/tb.data" of="$raw" bs=1M skip="$i" count=1 seek=$((i * 16384 + 37 * i)) \
      conv=notrunc status=none
  done
  qemu-img convert -O qcow2 "$raw" "$CACHE/tb.tmp"
  rm -f "$raw" "$CACHE/tb.data"
  mv "$CACHE/tb.tmp" "$CACHE/tb.qcow2"
}

# Metadata-preallocated images: every cluster has a host offset, and QEMU's block status says
# "data": true, "zero": true for the clusters never written (the image file's holes).
build_prealloc_images() {
  if [ ! -f "$CACHE/pa16g.qcow2" ]; then
    log "building the 16 GiB preallocated image (once)"
    local i
    rm -f "$CACHE/pa16g.tmp"
    qemu-img create -q -f qcow2 -o preallocation=metadata "$CACHE/pa16g.tmp" 16G
    for i in 0 1; do
      (find /usr/lib -type f -size +1M | sort | tail -n +$((1 + i * 200)) | head -200 | xargs cat |
        head -c $((256 << 20))) > "$CACHE/pa.data" 2>/dev/null || true
      qemu-io -f qcow2 -c "write -q -s $CACHE/pa.data $(((1 + 9 * i) << 30)) $((256 << 20))" \
        "$CACHE/pa16g.tmp"
    done
    rm -f "$CACHE/pa.data"
    mv "$CACHE/pa16g.tmp" "$CACHE/pa16g.qcow2"
  fi
  local size name
  for size in 1T 4T; do
    name="pa$(echo "$size" | tr T t)"
    [ -f "$CACHE/$name.qcow2" ] && continue
    log "building the $size preallocated image (once)"
    qemu-img create -q -f qcow2 -o preallocation=metadata "$CACHE/$name.tmp" "$size"
    qemu-io -f qcow2 -c "write -q -P 1 0 1M" -c "write -q -P 2 1000G 2M" "$CACHE/$name.tmp"
    mv "$CACHE/$name.tmp" "$CACHE/$name.qcow2"
  done
}

# ---------------------------------------------------------------------------------------------
# helpers

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
min() { printf '%s\n' "$@" | sort -g | head -1; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }
ratio() { echo "$1 / $2" | bc -l; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# warm IMAGE: the image file in the page cache, the rest of the cache dropped; then each tool run
# once (so that no tool starts from the disk: the JVM and its jars, qemu-img and its libraries),
# and PREWARM_MIB of memory touched and freed (see prewarm)
warm() {
  drop_caches; cache_file "$1"
  "$JQ" info "$1" >/dev/null; qemu-img info "$1" >/dev/null; qemu-storage-daemon --version >/dev/null
  prewarm
}
# cache_file FILE: reads FILE's data into the page cache, skipping its holes (a preallocated 4 TiB
# image is a 4 TiB file holding 655 MB)
cache_file() {
  python3 - "$1" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
end, pos = os.fstat(fd).st_size, 0
while pos < end:
    try:
        pos = os.lseek(fd, pos, os.SEEK_DATA)
    except OSError:
        break
    hole = os.lseek(fd, pos, os.SEEK_HOLE)
    while pos < hole:
        pos += len(os.pread(fd, min(1 << 20, hole - pos), pos))
PY
}
# prewarm: writes and deletes PREWARM_MIB (default 8192; 0: off) on tmpfs right before a timed run.
# This VM hands freed memory back to the host (free page reporting, min_free_ms 0), and the first
# write to a page the host took back costs far more than a copy: dd of 3000 MiB to tmpfs took
# 1.5-5.8 s without this step and 1.0-1.5 s after writing 8192 MiB. It takes most of the VM's page
# cost out of the comparison (closer to bare metal), which also makes qemu-storage-daemon's page
# cache (it grows by the whole file) cheaper. Two RUNS=6 runs, without it (7798256) and with it
# (d4e6b11, mapped windows added): plain cp took jqcowfs 1.70-3.25 s and 1.91-2.13 s, qsd 2.69-3.25
# s and 2.50-3.06 s, the same ratio (1.29, 1.31); plain convert jqcowfs 1.10-2.59 s and 1.29-1.60
# s, qemu-img 1.12-3.05 s and 1.31-1.54 s; zstd convert jqcowfs 2.76-4.03 s and 2.35-3.16 s.
# At most half of the memory available and of the room left on the tmpfs.
prewarm() {
  [ "$PREWARM_MIB" -gt 0 ] || return 0
  local avail room mib
  avail=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
  room=$(df -m --output=avail "$OUT" | tail -1)
  mib=$PREWARM_MIB
  ((mib <= avail / 2)) || mib=$((avail / 2))
  ((mib <= room / 2)) || mib=$((room / 2))
  dd if=/dev/zero of="$OUT/prewarm" bs=1M count="$mib" status=none; rm -f "$OUT/prewarm"
}
# sha FILE: a SHA-256 of the content, the same for a sparse and a dense copy (bench/content-sha.py)
sha() { python3 "$ROOT/bench/content-sha.py" "$1"; }

# secs CMD...: wall-clock seconds of CMD (its output discarded)
secs() { local t0; t0=$(now); "$@" >/dev/null 2>&1; since "$t0"; }

# jq_mount IMAGE: mounts IMAGE on $MNT; sets $file
jq_mount() {
  "$JQ" mount "$1" "$MNT" >/dev/null
  file="$MNT/$(basename "${1%.*}").raw"
}
jq_unmount() { "$JQ" unmount "$MNT"; }

# qsd_mount IMAGE: exports IMAGE through qemu-storage-daemon's FUSE export on $QSD_FILE
qsd_mount() {
  : > "$QSD_FILE"
  qemu-storage-daemon --blockdev "driver=file,node-name=file,filename=$1,read-only=on" \
    --blockdev driver=qcow2,node-name=fmt,file=file,read-only=on \
    --export "type=fuse,id=exp,node-name=fmt,mountpoint=$QSD_FILE" >/dev/null 2>&1 &
  qsd_pid=$!
  for _ in $(seq 200); do mountpoint -q "$QSD_FILE" && break; sleep 0.05; done
  mountpoint -q "$QSD_FILE" || { log "qemu-storage-daemon did not export $1"; exit 1; }
  file="$QSD_FILE"
}
qsd_unmount() { kill "$qsd_pid"; wait "$qsd_pid" 2>/dev/null || true; qsd_pid=""; }

# check NAME FILE WANT: FILE's sha256 must be WANT
check() {
  [ "$(sha "$2")" = "$3" ] || { log "MISMATCH: $1 differs from qemu-img convert"; exit 1; }
}

# time_cp SERVER IMAGE WANT: seconds of cp --sparse=always from a fresh mount (checked), or
# "timeout" past CP_TIMEOUT
time_cp() {
  local server=$1 img=$2 want=$3 t0 rc=0
  warm "$img"; "${server}_mount" "$img"
  t0=$(now); timeout "$CP_TIMEOUT" cp --sparse=always "$file" "$OUT/cp.raw" || rc=$?
  local t; t=$(since "$t0")
  "${server}_unmount"
  if [ $rc = 124 ]; then rm -f "$OUT/cp.raw"; echo timeout; return; fi
  [ $rc = 0 ] || { log "cp from $server failed ($rc)"; exit 1; }
  check "cp from $server of $(basename "$img")" "$OUT/cp.raw" "$want"; rm -f "$OUT/cp.raw"
  echo "$t"
}

# time_convert TOOL IMAGE WANT: seconds of a conversion to raw (checked)
time_convert() {
  local tool=$1 img=$2 want=$3 t
  rm -f "$OUT/conv.raw"; warm "$img"
  if [ "$tool" = jqcowfs ]; then t=$(secs "$JQ" convert -m 8 --no-progress "$img" "$OUT/conv.raw")
  else t=$(secs qemu-img convert -O raw -m 8 -W "$img" "$OUT/conv.raw"); fi
  check "$tool convert of $(basename "$img")" "$OUT/conv.raw" "$want"; rm -f "$OUT/conv.raw"
  echo "$t"
}

# fio_iops SERVER IMAGE: 4 KiB random-read IOPS through a fresh mount
fio_iops() {
  warm "$2"; "${1}_mount" "$2"
  local iops
  iops=$(fio --name=randread --filename="$file" --rw=randread --bs=4k --ioengine=libaio \
    --iodepth=16 --numjobs=2 --direct=1 --time_based --runtime="$FIO_SECONDS" --group_reporting \
    --randrepeat=1 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))')
  "${1}_unmount"
  echo "$iops"
}

# dd_secs IMAGE WANT: sequential dd bs=1M through a fresh jqcowfs mount, host cache cold (checked)
dd_secs() {
  drop_caches; jq_mount "$1"; prewarm
  local t0 t; t0=$(now)
  dd if="$file" of="$OUT/dd.raw" bs=1M status=none
  t=$(since "$t0"); jq_unmount
  check "dd of $(basename "$1")" "$OUT/dd.raw" "$2"; rm -f "$OUT/dd.raw"
  echo "$t"
}

# mount_ready IMAGE [cold]: seconds from jqcowfs mount to the first 4 KiB read (left mounted);
# with "cold", the page cache is dropped first (the JVM's own files too)
mount_ready() {
  if [ "${2:-}" = cold ]; then drop_caches; else warm "$1"; fi
  local t0; t0=$(now)
  jq_mount "$1"
  dd if="$file" of=/dev/null bs=4k count=1 status=none
  since "$t0"
}

# in_turn I A B: runs A then B (functions that record one measure each) in run I when I is odd,
# and B then A when it is even. The two tools of a pair never always run in the same place: a
# zstd cp measured right after the conversions ran slower than the same cp one step later (KINDS=zstd
# RUNS=3, jqcowfs then qsd: 3.83 s against 4.99 s; RUNS=4 the other way round: 3.65 s against 6.18 s).
in_turn() { if (($1 % 2)); then "$2"; "$3"; else "$3"; "$2"; fi; }

# want IMAGE: sha256 of qemu-img convert's raw output (cached next to the image)
want() {
  local img=$1 sum="${1%.qcow2}.sha256"
  if [ ! -f "$sum" ] || [ "$sum" -ot "$img" ]; then
    qemu-img convert -O raw "$img" "$OUT/ref.raw"; sha "$OUT/ref.raw" > "$sum"; rm -f "$OUT/ref.raw"
  fi
  cat "$sum"
}

# ---------------------------------------------------------------------------------------------

if [ "$KINDS" = sparse ]; then build_prealloc_images
else build_os_images; build_frag_images; build_tb_image; build_prealloc_images; fi
[ "${BENCH_IMAGES_ONLY:-0}" = 1 ] && exit 0
make -s build >/dev/null
mkdir -p "$MNT"
json=(); conv_rows=(); cp_rows=(); fio_rows=(); frag_rows=(); mount_rows=(); sparse_rows=()
note() { json+=("$1"); }
# nums V...: the values as JSON numbers (bc prints 0.41 as .41), comma-separated
nums() { local v out=(); for v in "$@"; do out+=("$(printf %.3f "$v")"); done; (IFS=,; echo "${out[*]}"); }

convert_qemu_img() { q+=("$(keep "qemu-img convert s" "$(time_convert qemu-img "$img" "$w")")"); }
convert_jqcowfs() { j+=("$(keep "jqcowfs convert s" "$(time_convert jqcowfs "$img" "$w")")"); }
cp_jqcowfs() { cj+=("$(keep "cp from jqcowfs s" "$(time_cp jq "$img" "$w")")"); }
cp_qsd() { cq+=("$(keep "cp from qsd s" "$(time_cp qsd "$img" "$w")")"); }
fio_jqcowfs() { fj+=("$(keep "fio jqcowfs IOPS" "$(fio_iops jq "$img")")"); }
fio_qsd() { fq+=("$(keep "fio qsd IOPS" "$(fio_iops qsd "$img")")"); }

# sparse_table: the 16 GiB preallocated image, cp through both mounts and both converts
sparse_table() {
  img="$CACHE/pa16g.qcow2"; w=$(want "$img")
  q=(); j=(); cj=(); cq=()
  for i in $(seq "$RUNS"); do
    log "16 GiB preallocated run $i/$RUNS"
    in_turn "$i" cp_jqcowfs cp_qsd
    in_turn "$i" convert_qemu_img convert_jqcowfs
  done
  local a b c d
  a=$(median "${cj[@]}"); b=$(median "${cq[@]}"); c=$(median "${q[@]}"); d=$(median "${j[@]}")
  sparse_rows+=("$(printf '| 16 GiB, 512 MiB written | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | **%.2f** |' \
    "$a" "$(min "${cj[@]}")" "$(max "${cj[@]}")" "$b" "$(min "${cq[@]}")" "$(max "${cq[@]}")" \
    "$c" "$(min "${q[@]}")" "$(max "${q[@]}")" "$d" "$(min "${j[@]}")" "$(max "${j[@]}")" "$(ratio "$b" "$a")")")
  note "$(printf '{"image":"pa16g","cp_jqcowfs_s":%.3f,"cp_qsd_s":%.3f,"qemu_img_convert_s":%.3f,"jqcowfs_convert_s":%.3f,"runs_cp_jqcowfs":[%s],"runs_cp_qsd":[%s],"runs_qemu_img":[%s],"runs_jqcowfs":[%s]}' \
    "$a" "$b" "$c" "$d" "$(nums "${cj[@]}")" "$(nums "${cq[@]}")" "$(nums "${q[@]}")" "$(nums "${j[@]}")")"
}

# mount_table IMAGE...: mount-ready time (image cached; and cold, page cache dropped, for the
# preallocated images) and peak RSS after a full cp of the flat file
mount_table() {
  local img m c rss mm cm rm_
  for img in "$@"; do
    m=(); c=(); rss=()
    for i in $(seq "$RUNS"); do
      m+=("$(keep "mount ready s" "$(mount_ready "$img")")")
      pid=$(pgrep -n -f -- "--notify-ready")
      cp --sparse=always "$MNT/$(basename "${img%.*}").raw" "$OUT/cp.raw"; rm -f "$OUT/cp.raw"
      rss+=("$(keep "peak RSS MiB" "$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status")")")
      jq_unmount
      case $img in */pa*) c+=("$(keep "mount ready cold s" "$(mount_ready "$img" cold)")"); jq_unmount ;; esac
    done
    mm=$(median "${m[@]}"); rm_=$(median "${rss[@]}")
    if [ ${#c[@]} -gt 0 ]; then cm=$(printf %.2f "$(median "${c[@]}")"); else cm=-; fi
    mount_rows+=("$(printf '| %s | %.2f | %s | %.0f |' "$(basename "$img")" "$mm" "$cm" "$rm_")")
    note "$(printf '{"image":"%s","mount_ready_s":%.3f,"mount_ready_cold_s":"%s","peak_rss_mib":%.0f}' "$(basename "$img")" "$mm" "$cm" "$rm_")"
  done
}

sparse_header() {
  echo "### Metadata-preallocated image: cp --sparse=always and convert (seconds, median (min-max))"
  echo
  echo "| image | cp from jqcowfs | cp from qemu-storage-daemon | qemu-img convert | jqcowfs convert | cp speed-up vs qsd |"
  echo "|---|---|---|---|---|---|"
}
mount_header() {
  echo "### Mount"
  echo
  echo "| image | mount to first read, image cached (s) | the same, page cache cold (s) | daemon peak RSS after a full cp (MiB) |"
  echo "|---|---|---|---|"
}

if [ "$KINDS" = sparse ]; then
  sparse_table
  mount_table "$CACHE/pa1t.qcow2" "$CACHE/pa4t.qcow2"
  { sparse_header; printf '%s\n' "${sparse_rows[@]}"; echo; mount_header; printf '%s\n' "${mount_rows[@]}"; }
  exit 0
fi

for kind in $KINDS; do
  img="$CACHE/os-$kind.qcow2"; w=$(want "$img")
  data=$(qemu-img map --output=json "$img" | python3 -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
  q=(); j=(); cj=(); cq=(); fj=(); fq=()
  for i in $(seq "$RUNS"); do
    log "$kind run $i/$RUNS: convert"
    in_turn "$i" convert_qemu_img convert_jqcowfs
    log "$kind run $i/$RUNS: cp --sparse=always"
    in_turn "$i" cp_jqcowfs cp_qsd
    log "$kind run $i/$RUNS: fio"
    in_turn "$i" fio_jqcowfs fio_qsd
  done
  qm=$(median "${q[@]}"); jm=$(median "${j[@]}"); cjm=$(median "${cj[@]}"); cqm=$(median "${cq[@]}")
  fjm=$(median "${fj[@]}"); fqm=$(median "${fq[@]}")
  conv_rows+=("$(printf '| %s | %s MB | %.2f | %.2f | **%.2f** |' "$kind" "$((data / 1000000))" "$qm" "$jm" "$(ratio "$jm" "$qm")")")
  cp_rows+=("$(printf '| %s | %.2f | %.2f | %.2f | **%.2f** | %.2f |' "$kind" "$cjm" "$cqm" "$qm" "$(ratio "$cqm" "$cjm")" "$(ratio "$cjm" "$qm")")")
  fio_rows+=("$(printf '| %s | %.0f | %.0f | **%.2f** |' "$kind" "$fjm" "$fqm" "$(ratio "$fjm" "$fqm")")")
  note "$(printf '{"image":"os-%s","data_bytes":%s,"convert":{"qemu_img_s":%.3f,"jqcowfs_s":%.3f,"ratio":%.3f,"runs_qemu_img":[%s],"runs_jqcowfs":[%s]},"cp_sparse":{"jqcowfs_s":%.3f,"qsd_s":%.3f,"speedup_vs_qsd":%.3f,"runs_jqcowfs":[%s],"runs_qsd":[%s]},"fio_randread_4k":{"jqcowfs_iops":%.0f,"qsd_iops":%.0f,"ratio":%.3f}}' \
    "$kind" "$data" "$qm" "$jm" "$(ratio "$jm" "$qm")" "$(nums "${q[@]}")" "$(nums "${j[@]}")" \
    "$cjm" "$cqm" "$(ratio "$cqm" "$cjm")" "$(nums "${cj[@]}")" "$(nums "${cq[@]}")" "$fjm" "$fqm" "$(ratio "$fjm" "$fqm")")"
done
if [ "$KINDS" != "plain deflate zstd" ]; then
  printf '%s\n' "${cp_rows[@]}" "${conv_rows[@]}" "${fio_rows[@]}"
  exit 0
fi

# fragmented against in-order, cold host cache
wf=$(want "$CACHE/frag.qcow2"); wi=$(want "$CACHE/inorder.qcow2")
[ "$wf" = "$wi" ] || { log "the fragmented and in-order images differ"; exit 1; }
df=(); di=(); dr=()
dd_inorder() { di+=("$(keep "dd in-order s" "$(dd_secs "$CACHE/inorder.qcow2" "$wi")")"); }
dd_fragmented() { df+=("$(keep "dd fragmented s" "$(dd_secs "$CACHE/frag.qcow2" "$wf")")"); }
# The disk alone, as a floor for the ratio: fio reading 1 GiB of the image file with O_DIRECT,
# cold, in 64 KiB reads at random offsets (what a fragmented image asks of it) against 1 MiB reads
# in order (what the in-order one asks)
disk_secs() {
  drop_caches
  fio --name=disk --filename="$CACHE/frag.qcow2" --rw="$1" --bs="$2" --iodepth="$3" \
    --ioengine=libaio --direct=1 --io_size=1G --randrepeat=1 --output-format=json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["jobs"][0]["read"]; print(r["io_bytes"]/r["bw_bytes"])'
}
disk_ratio() {
  local r s; r=$(disk_secs randread 64k 32); s=$(disk_secs read 1M 3)
  dr+=("$(keep "disk alone: 64 KiB random / 1 MiB in order" "$(ratio "$r" "$s")")")
}
for i in $(seq "$RUNS"); do
  log "fragmented run $i/$RUNS"
  in_turn "$i" dd_inorder dd_fragmented
  disk_ratio
done
dim=$(median "${di[@]}"); dfm=$(median "${df[@]}"); drm=$(median "${dr[@]}")
frag_rows+=("$(printf '| 4 GiB, 64 KiB clusters | %.2f | %.2f | **%.2f** | %.2f |' "$dim" "$dfm" "$(ratio "$dfm" "$dim")" "$drm")")
note "$(printf '{"image":"frag","dd_inorder_s":%.3f,"dd_fragmented_s":%.3f,"ratio":%.3f,"disk_alone_ratio":%.3f,"runs_inorder":[%s],"runs_fragmented":[%s]}' "$dim" "$dfm" "$(ratio "$dfm" "$dim")" "$drm" "$(nums "${di[@]}")" "$(nums "${df[@]}")")"

# 1 TiB holding 64 MiB: cp through both mounts and both converts
img="$CACHE/tb.qcow2"; w=$(want "$img")
q=(); j=(); cj=(); cq=() # the OS images' measures, now of this image
for i in $(seq "$RUNS"); do
  log "1 TiB run $i/$RUNS"
  in_turn "$i" cp_jqcowfs cp_qsd
  in_turn "$i" convert_qemu_img convert_jqcowfs
done
tjm=$(median "${cj[@]}"); tcm=$(median "${q[@]}"); tjcm=$(median "${j[@]}")
if printf "%s\n" "${cq[@]}" | grep -q timeout; then tqm=">$CP_TIMEOUT"; tqj=null; else tqm=$(printf %.2f "$(median "${cq[@]}")"); tqj=$tqm; fi
note "$(printf '{"image":"tb","cp_jqcowfs_s":%.3f,"cp_qsd_s":%s,"qemu_img_convert_s":%.3f,"jqcowfs_convert_s":%.3f}' "$tjm" "$tqj" "$tcm" "$tjcm")"

# the 16 GiB preallocated image; mount-ready time and peak RSS (after a full cp of the flat file)
sparse_table
mount_table "$CACHE/os-plain.qcow2" "$CACHE/os-zstd.qcow2" "$CACHE/tb.qcow2" "$CACHE/pa1t.qcow2" "$CACHE/pa4t.qcow2"

{
  echo "# jqcowfs benchmark"
  echo
  echo "$(nproc) cores, $(uname -r), $(qemu-img --version | head -1 | sed 's/ (.*//'), $(date -u +%Y-%m-%d)."
  echo "Median of $RUNS runs, tools interleaved, which goes first alternating; image files in the page cache and each tool run once"
  echo "before each timed run, $PREWARM_MIB MiB of memory touched first (bench/run.sh, prewarm); output on tmpfs;"
  echo "every copy and conversion checked against \`qemu-img convert -O raw\` (sha256)."
  echo "OS images: 4 GiB GPT disk, ext4 filled with /usr, 64 KiB clusters."
  echo
  echo "### cp --sparse=always of the flat file (seconds)"
  echo
  echo "| image | jqcowfs mount | qemu-storage-daemon export | qemu-img convert -m 8 -W | speed-up vs qsd | jqcowfs / qemu-img |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${cp_rows[@]}"
  echo
  echo "### jqcowfs convert -m 8 vs qemu-img convert -O raw -m 8 -W (seconds)"
  echo
  echo "| image | data | qemu-img | jqcowfs | ratio (below 1: jqcowfs faster) |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${conv_rows[@]}"
  echo
  echo "### fio 4 KiB random reads, 2 jobs, libaio iodepth 16, O_DIRECT, $FIO_SECONDS s (IOPS)"
  echo
  echo "| image | jqcowfs | qemu-storage-daemon | ratio |"
  echo "|---|---|---|---|"
  printf '%s\n' "${fio_rows[@]}"
  echo
  echo "### Fragmented image: dd bs=1M through the mount, host cache cold (seconds)"
  echo
  echo "| image | written in order | written in random 64 KiB order | ratio | disk alone (fio, 64 KiB random / 1 MiB in order) |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${frag_rows[@]}"
  echo
  echo "### 1 TiB virtual disk holding 64 MiB (seconds)"
  echo
  echo "| cp from jqcowfs | cp from qemu-storage-daemon | qemu-img convert | jqcowfs convert |"
  echo "|---|---|---|---|"
  printf '| %.2f | %s | %.2f | %.2f |\n' "$tjm" "$tqm" "$tcm" "$tjcm"
  echo
  sparse_header
  printf '%s\n' "${sparse_rows[@]}"
  echo
  mount_header
  printf '%s\n' "${mount_rows[@]}"
} | tee bench/results.md
(IFS=,; echo "[${json[*]}]") | python3 -m json.tool > bench/results.json
# docs/performance.md shows the same tables, between its bench markers.
python3 - "$ROOT/docs/performance.md" "$ROOT/bench/results.md" <<'PY'
import re, sys
readme, results = open(sys.argv[1]).read(), open(sys.argv[2]).read()
body = results.split("\n", 2)[2].replace("### ", "#### ")  # without the title line
new = re.sub(r"<!-- bench:begin -->.*<!-- bench:end -->",
             lambda m: "<!-- bench:begin -->\n" + body.strip() + "\n<!-- bench:end -->",
             readme, flags=re.S)
open(sys.argv[1], "w").write(new)
PY
