#!/usr/bin/env bash
# make bench: jqcowfs convert against qemu-img convert -O raw -m 8 -W, same images, same run.
# Images are built once into bench/cache: a 4 GiB GPT disk whose ext4 partition holds ~3 GB of
# this machine's /usr, as qcow2 uncompressed, deflate and zstd. Output goes to tmpfs.
# Prints and writes bench/results.md and bench/results.json. Each result is the median of RUNS runs,
# and every jqcowfs output is checked against qemu-img's (sha256).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${BENCH_CACHE:-$ROOT/bench/cache}
OUT=${BENCH_OUT:-/dev/shm/jqcowfs-bench}
RUNS=${RUNS:-3}
TARGET_BYTES=${TARGET_BYTES:-3000000000}
mkdir -p "$CACHE" "$OUT"
trap 'rm -rf "$OUT"' EXIT

build_images() {
  [ -f "$CACHE/os-zstd.qcow2" ] && return
  echo "building bench images in $CACHE (once)..."
  local stage="$CACHE/stage" part="$CACHE/part.ext4" disk="$CACHE/os.raw"
  if [ ! -f "$CACHE/staged" ]; then rm -rf "$stage"; mkdir -p "$stage"
  # Hard links of /usr subtrees (same filesystem) or copies, until about TARGET_BYTES.
  local total=0
  for d in /usr/lib/* /usr/share/* /usr/bin /usr/libexec /usr/include; do
    [ -e "$d" ] || continue
    sz=$(du -sb "$d" 2>/dev/null | cut -f1)
    [ $((total + sz)) -gt "$TARGET_BYTES" ] && continue
    mkdir -p "$stage$(dirname "$d")"
    cp -a --reflink=auto -l "$d" "$stage$(dirname "$d")/" 2>/dev/null || cp -a "$d" "$stage$(dirname "$d")/"
    total=$((total + sz))
  done
  echo "staged $total bytes"; touch "$CACHE/staged"; fi
  truncate -s 4G "$disk"
  sgdisk -n 1:2048:0 -t 1:8300 "$disk" >/dev/null
  local start=$((2048 * 512)) sectors
  sectors=$(sgdisk -i 1 "$disk" | awk '/Last sector/ {print $3}')
  truncate -s $(((sectors - 2048 + 1) * 512)) "$part"
  mkfs.ext4 -q -F -d "$stage" "$part"
  dd if="$part" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
  rm -f "$part" "$CACHE/staged"; rm -rf "$stage"
  qemu-img convert -O qcow2 "$disk" "$CACHE/os-plain.qcow2"
  qemu-img convert -c -O qcow2 -o compression_type=zlib "$disk" "$CACHE/os-deflate.qcow2"
  qemu-img convert -c -O qcow2 -o compression_type=zstd "$disk" "$CACHE/os-zstd.qcow2"
  rm -f "$disk"
}

# median of the given numbers
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# time_cmd CMD...: seconds, page cache dropped first so both tools read from disk
time_cmd() {
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  local t0 t1
  t0=$(date +%s.%N); "$@" >/dev/null; t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}

build_images
make -s build >/dev/null
JQ="$ROOT/bin/jqcowfs"
rows=(); json=()
for kind in plain deflate zstd; do
  img="$CACHE/os-$kind.qcow2"
  q=(); j=()
  for i in $(seq "$RUNS"); do
    rm -f "$OUT/q.raw" "$OUT/j.raw"
    q+=("$(time_cmd qemu-img convert -O raw -m 8 -W "$img" "$OUT/q.raw")")
    j+=("$(time_cmd "$JQ" convert -m 8 --no-progress "$img" "$OUT/j.raw")")
    if [ "$i" = 1 ]; then
      [ "$(sha256sum < "$OUT/q.raw")" = "$(sha256sum < "$OUT/j.raw")" ] || { echo "MISMATCH on $kind" >&2; exit 1; }
    fi
  done
  qm=$(median "${q[@]}"); jm=$(median "${j[@]}")
  ratio=$(echo "$jm / $qm" | bc -l)
  data=$(qemu-img map --output=json "$img" | python3 -c 'import json,sys; print(sum(e["length"] for e in json.load(sys.stdin) if e["data"]))')
  rows+=("$(printf '| %s | %s | %.2f | %.2f | %.2f |' "$kind" "$((data / 1000000)) MB" "$qm" "$jm" "$ratio")")
  json+=("$(printf '{"image":"%s","data_bytes":%s,"qemu_img_s":%.3f,"jqcowfs_s":%.3f,"ratio":%.3f}' "$kind" "$data" "$qm" "$jm" "$ratio")")
done
{
  echo "# jqcowfs bench: \`jqcowfs convert -m 8\` vs \`qemu-img convert -O raw -m 8 -W\`"
  echo
  echo "4 GiB GPT disk, ext4 filled from /usr, 64 KiB clusters; output to tmpfs; page cache dropped"
  echo "before each run; median of $RUNS runs; $(nproc) cores; $(qemu-img --version | head -1)."
  echo "ratio = jqcowfs / qemu-img (below 1.0: jqcowfs is faster). Outputs checked equal (sha256)."
  echo
  echo "| image | data | qemu-img (s) | jqcowfs (s) | ratio |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee bench/results.md
(IFS=,; echo "[${json[*]}]") > bench/results.json
