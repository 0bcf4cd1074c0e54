#!/usr/bin/env bash
# A/B of the read path between builds, interleaved (the order turns each round):
#   bash bench/ab-read.sh cp|fio KIND ROUNDS BUILD_DIR...
# KIND is an OS image of make bench (plain, deflate, zstd: bench/cache/os-KIND.qcow2, in the page
# cache). Each BUILD_DIR is a built tree (bin/jqcowfs, cli/target/jqcowfs.jsa), e.g. a git
# worktree of an older commit after `mvn -o package -DskipTests && bin/cds-archive bin/jqcowfs
# cli/target/jqcowfs.jsa`.
#   cp   cp --sparse=always of the flat file to tmpfs (seconds)
#   fio  4 KiB random reads, 2 jobs x QD16, O_DIRECT, 2 s warm-up then 10 s (IOPS)
# Prints "build value" per run.
set -euo pipefail
test=$1 kind=$2 rounds=$3; shift 3
builds=("$@")
image=$(cd "$(dirname "$0")" && pwd)/cache/os-$kind.qcow2
dir=/dev/shm/jqcowfs-ab-read
mkdir -p "$dir/mnt"
trap 'mountpoint -q "$dir/mnt" && umount "$dir/mnt"; rm -rf "$dir"' EXIT
cat "$image" > /dev/null
run() {
  "$1/bin/jqcowfs" mount "$image" "$dir/mnt" 2>/dev/null
  local flat="$dir/mnt/os-$kind.raw" value start
  case $test in
    cp)
      start=$(date +%s.%N)
      cp --sparse=always "$flat" "$dir/out.raw"
      value=$(echo "$(date +%s.%N) - $start" | bc -l | xargs printf '%.2f')
      rm -f "$dir/out.raw" ;;
    fio)
      fio --name=w --filename="$flat" --rw=randread --bs=4k --direct=1 --ioengine=libaio \
        --numjobs=2 --iodepth=16 --time_based --runtime=2 --group_reporting >/dev/null
      value=$(fio --name=r --filename="$flat" --rw=randread --bs=4k --direct=1 --ioengine=libaio \
        --numjobs=2 --iodepth=16 --time_based --runtime=10 --group_reporting --output-format=json |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["jobs"][0]["read"]["iops"]))') ;;
    *) echo "test: cp or fio" >&2; exit 2 ;;
  esac
  "$1/bin/jqcowfs" unmount "$dir/mnt"
  echo "$1 $value"
}
for ((r = 0; r < rounds; r++)); do
  for b in "${builds[@]}"; do run "$b"; done
  mapfile -t builds < <(printf '%s\n' "${builds[@]}" | tac)
done
