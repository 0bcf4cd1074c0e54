#!/usr/bin/env bash
# make bench-chainops: chain operations against qemu-img on the same inputs, side by side in one
# run (issue 44's targets), written to bench/results-chainops.md:
#   convert -c  jqcowfs convert -O qcow2 -c  vs  qemu-img convert -O qcow2 -c -m 8 -W, of
#               os-plain.qcow2 (the 4 GiB OS image of bench/os-images.sh), zlib and zstd (seconds;
#               output bytes)
#   commit      jqcowfs commit  vs  qemu-img commit, of a 1 GiB overlay (16 runs of 64 MiB spread
#               over the disk) into a copy of os-plain.qcow2 (seconds)
# Each the median of RUNS runs (with min and max); the two tools of a pair run one after the
# other, which goes first alternating from run to run. Inputs and outputs on tmpfs; every output
# is checked with qemu-img compare against qemu-img's. Run as root (make deps, make build first).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${BENCH_CACHE:-$ROOT/bench/cache}
OUT=${BENCH_OUT:-/dev/shm/jqcowfs-bench-chainops}
RUNS=${RUNS:-3}
TARGET_BYTES=${TARGET_BYTES:-3000000000}
JQ="$ROOT/bin/jqcowfs"
RESULTS="$ROOT/bench/results-chainops.md"
# MEASURES="commit" (or "convert") runs only those, prints them, and leaves the results file alone
MEASURES=${MEASURES:-convert commit}
[ "$MEASURES" = "convert commit" ] || RESULTS=/dev/null

log() { echo "bench: $*" >&2; }
source "$ROOT/bench/os-images.sh"
mkdir -p "$CACHE"
build_os_images
rm -rf "$OUT"; mkdir -p "$OUT"
trap 'rm -rf "$OUT"' EXIT
cp "$CACHE/os-plain.qcow2" "$OUT/src.qcow2"

# secs CMD...: runs CMD (output discarded) and prints its wall time in seconds
secs() {
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1 || { log "failed: $*"; exit 1; }
  e=$(date +%s.%N)
  echo "$e - $s" | bc
}

# stats V...: "median (min-max)"
stats() {
  printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m = NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2;
    printf "%.2f (%.2f-%.2f)", m, v[1], v[NR]}'
}
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print NR % 2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

rows=()
kinds="zlib zstd"; [[ " $MEASURES " = *" convert "* ]] || kinds=""
for kind in $kinds; do
  jq=(); qm=()
  for run in $(seq 1 "$RUNS"); do
    rm -f "$OUT/jq.qcow2" "$OUT/qemu.qcow2"
    jqcmd=("$JQ" convert -q -O qcow2 -c -o compression_type=$kind "$OUT/src.qcow2" "$OUT/jq.qcow2")
    qcmd=(qemu-img convert -q -O qcow2 -c -m 8 -W -o compression_type=$kind "$OUT/src.qcow2" "$OUT/qemu.qcow2")
    if [ $((run % 2)) = 1 ]; then
      jq+=("$(secs "${jqcmd[@]}")"); qm+=("$(secs "${qcmd[@]}")")
    else
      qm+=("$(secs "${qcmd[@]}")"); jq+=("$(secs "${jqcmd[@]}")")
    fi
    log "convert -c $kind run $run: jqcowfs ${jq[-1]} s, qemu-img ${qm[-1]} s"
  done
  qemu-img compare -q "$OUT/qemu.qcow2" "$OUT/jq.qcow2" || { log "convert -c $kind: content differs"; exit 1; }
  qemu-img check -q "$OUT/jq.qcow2" || { log "convert -c $kind: check not clean"; exit 1; }
  jb=$(stat -c %s "$OUT/jq.qcow2"); qb=$(stat -c %s "$OUT/qemu.qcow2")
  ratio=$(echo "scale=2; $(median "${jq[@]}") / $(median "${qm[@]}")" | bc)
  rows+=("| convert -O qcow2 -c, $kind | $(stats "${jq[@]}") | $(stats "${qm[@]}") | $ratio | $jb / $qb |")
done
rm -f "$OUT/jq.qcow2" "$OUT/qemu.qcow2"

# the 1 GiB overlay, built once per run of this script
[[ " $MEASURES " = *" commit "* ]] && {
qemu-img create -q -f qcow2 -b src.qcow2 -F qcow2 "$OUT/top.qcow2"
io=()
for i in $(seq 0 15); do io+=(-c "write -q -P $((i + 1)) $((i * 256))M 64M"); done
qemu-io -f qcow2 "${io[@]}" "$OUT/top.qcow2" >/dev/null
cp "$OUT/top.qcow2" "$OUT/top.orig"
jq=(); qm=()
for run in $(seq 1 "$RUNS"); do
  for tool in jq qemu; do
    mkdir -p "$OUT/$tool"
    cp "$OUT/src.qcow2" "$OUT/$tool/src.qcow2"
    cp "$OUT/top.orig" "$OUT/$tool/top.qcow2"
  done
  if [ $((run % 2)) = 1 ]; then
    jq+=("$(secs "$JQ" commit -q "$OUT/jq/top.qcow2")"); qm+=("$(secs qemu-img commit -q "$OUT/qemu/top.qcow2")")
  else
    qm+=("$(secs qemu-img commit -q "$OUT/qemu/top.qcow2")"); jq+=("$(secs "$JQ" commit -q "$OUT/jq/top.qcow2")")
  fi
  log "commit run $run: jqcowfs ${jq[-1]} s, qemu-img ${qm[-1]} s"
done
qemu-img compare -q "$OUT/qemu/src.qcow2" "$OUT/jq/src.qcow2" || { log "commit: bases differ"; exit 1; }
qemu-img check -q "$OUT/jq/src.qcow2" || { log "commit: base check not clean"; exit 1; }
ratio=$(echo "scale=2; $(median "${jq[@]}") / $(median "${qm[@]}")" | bc)
rows+=("| commit of a 1 GiB overlay | $(stats "${jq[@]}") | $(stats "${qm[@]}") | $ratio | |")
}

{
  echo "# make bench-chainops ($(date -u +%Y-%m-%d), $(nproc) CPUs, RUNS=$RUNS, $(git rev-parse --short HEAD))"
  echo
  echo "Seconds: median (min-max). Ratio: jqcowfs / qemu-img (below 1: jqcowfs faster). Bytes: the"
  echo "output file's length, jqcowfs / qemu-img."
  echo
  echo "| measure | jqcowfs | qemu-img | ratio | bytes |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
} | tee "$RESULTS"
