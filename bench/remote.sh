#!/usr/bin/env bash
# make bench-remote: images read from an HTTP server, side by side in one run, at several
# round-trip times. nginx (Debian's nginx-light) serves bench/cache on 127.0.0.1; in front of it a
# delaying TCP proxy (bench/DelayProxy.java: RTT/2 per direction, streaming; this kernel has no
# netem) per RTT. For each RTT and image kind (the 4 GiB OS images of make bench), RUNS rounds, the
# tools' order rotating from round to round:
#   jq-convert   jqcowfs convert URL out.raw
#   qemu-curl    qemu-img convert -m 1 -f qcow2 -O raw URL out.raw (QEMU's curl driver, Debian's
#                qemu-block-extra 7.2). -m 1: with convert's default 8 coroutines the driver stops
#                sending requests after a while (plain and zstd, even at 0 ms, straight to nginx:
#                687 MiB of 4 GiB written, then nothing for minutes); with one it completes.
#   download     curl -o image.qcow2 URL, then qemu-img convert -O raw image.qcow2 out.raw
#   jq-cp        jqcowfs mount URL; cp --sparse=always MNT/os-KIND.raw out.raw; unmount
# Every output is compared with qemu-img convert of the local file. Bytes the server sent (its
# access log) are reported per tool, against the image file's bytes. Output on tmpfs; the image
# files are in the page cache, so the disk does not decide. Writes bench/results-remote.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${BENCH_CACHE:-$ROOT/bench/cache}
OUT=${BENCH_OUT:-/dev/shm/jqcowfs-bench-remote}
RUNS=${RUNS:-2}
RTTS=${RTTS:-0 10 40}
KINDS=${KINDS:-plain zstd}
TOOLS=${TOOLS:-jq-convert qemu-curl download jq-cp}
TARGET_BYTES=${TARGET_BYTES:-3000000000}
TIMEOUT=${TIMEOUT:-900}
JQ="$ROOT/bin/jqcowfs"
MNT="$OUT/mnt"
RESULTS="$ROOT/bench/results-remote.md"
BUILT_AT=$(git rev-parse --short HEAD) # the commit measured: named now, not when the run ends
pids=()
mkdir -p "$CACHE" "$OUT" "$MNT"

log() { echo "bench-remote: $*" >&2; }
cleanup() {
  set +e
  mountpoint -q "$MNT" && "$JQ" unmount "$MNT"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  rm -rf "$OUT"
}
trap cleanup EXIT

source "$ROOT/bench/os-images.sh"
build_os_images

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
min() { printf '%s\n' "$@" | sort -g | head -1; }
max() { printf '%s\n' "$@" | sort -g | tail -1; }

# nginx on 127.0.0.1 serving $CACHE, one line per request: request, status, body bytes sent
NGINX_PORT=$(free_port)
mkdir -p "$OUT/nginx/tmp"
cat > "$OUT/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log;
events { worker_connections 1024; }
http {
  log_format bytes '\$request \$status \$body_bytes_sent';
  access_log $OUT/nginx/access.log bytes;
  client_body_temp_path $OUT/nginx/tmp;
  proxy_temp_path $OUT/nginx/tmp;
  fastcgi_temp_path $OUT/nginx/tmp;
  uwsgi_temp_path $OUT/nginx/tmp;
  scgi_temp_path $OUT/nginx/tmp;
  sendfile on;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$NGINX_PORT; root $CACHE; }
}
CONF
nginx -c "$OUT/nginx/nginx.conf" & pids+=($!)
declare -A PROXY_PORT
for rtt in $RTTS; do
  port=$(free_port)
  java -Xss512k bench/DelayProxy.java "$port" "$NGINX_PORT" "$(echo "$rtt / 2" | bc -l)" \
    > "$OUT/proxy-$rtt.log" 2>&1 & pids+=($!)
  PROXY_PORT[$rtt]=$port
done
for rtt in $RTTS; do
  for i in $(seq 1 100); do grep -q ready "$OUT/proxy-$rtt.log" 2>/dev/null && break; sleep 0.1; done
done
sleep 0.5

lines_served() { wc -l < "$OUT/nginx/access.log"; }
# sent_since N: body bytes nginx sent after its first N log lines
sent_since() { tail -n +$(($1 + 1)) "$OUT/nginx/access.log" | awk '{s += $NF} END {printf "%.0f\n", s}'; }

# run_tool TOOL KIND RTT: prints "SECONDS BYTES_SENT"; the output checked against the reference
run_tool() {
  local tool=$1 kind=$2 rtt=$3 out="$OUT/out.raw" start lines t
  local url="http://127.0.0.1:${PROXY_PORT[$rtt]}/os-$kind.qcow2"
  rm -f "$out"; sync; lines=$(lines_served); start=$(now)
  case $tool in
    jq-convert) timeout "$TIMEOUT" "$JQ" convert --no-progress "$url" "$out" ;;
    qemu-curl) timeout "$TIMEOUT" qemu-img convert -m 1 -f qcow2 -O raw "$url" "$out" ;;
    download)
      timeout "$TIMEOUT" curl -sSf -o "$OUT/dl.qcow2" "$url"
      qemu-img convert -f qcow2 -O raw "$OUT/dl.qcow2" "$out"
      rm -f "$OUT/dl.qcow2" ;;
    jq-cp)
      "$JQ" mount "$url" "$MNT"
      timeout "$TIMEOUT" cp --sparse=always "$MNT/os-$kind.raw" "$out"
      "$JQ" unmount "$MNT" ;;
  esac
  t=$(echo "$(now) - $start" | bc -l)
  if ! cmp -s "$out" "$OUT/ref-$kind.raw"; then
    log "$tool, $kind, RTT $rtt ms: the output differs from qemu-img convert of the local file"
    exit 1
  fi
  rm -f "$out"
  printf '%.2f %s\n' "$t" "$(sent_since "$lines")"
}

declare -A SECS BYTES
read -r -a tools <<< "$TOOLS"
for kind in $KINDS; do
  image="$CACHE/os-$kind.qcow2"
  cat "$image" > /dev/null # in the page cache: the disk does not decide
  qemu-img convert -f qcow2 -O raw "$image" "$OUT/ref-$kind.raw"
  for rtt in $RTTS; do
    for round in $(seq 1 "$RUNS"); do
      n=${#tools[@]}
      for k in $(seq 0 $((n - 1))); do
        tool=${tools[$(((k + round - 1) % n))]}
        read -r secs sent < <(run_tool "$tool" "$kind" "$rtt")
        log "$kind, RTT $rtt ms, round $round: $tool $secs s, $sent bytes sent"
        SECS[$kind,$rtt,$tool]+="$secs "
        BYTES[$kind,$rtt,$tool]=$sent
      done
    done
  done
  rm -f "$OUT/ref-$kind.raw"
done

# ---------------------------------------------------------------------------------------------
# report: median (min-max) seconds, bytes sent per image-file byte, and the targets' ratios
ratio() { echo "scale=2; $1 / $2" | bc -l | sed 's/^\./0./'; }
{
  echo "# make bench-remote ($(date -u +%Y-%m-%d), $BUILT_AT, RUNS=$RUNS)"
  echo
  echo "Seconds, median (min-max) of $RUNS; sent = bytes nginx sent / bytes of the image file."
  echo
  echo "| image | RTT | $(printf '%s | ' "${tools[@]}")jq-convert / download | jq-convert / qemu-curl | jq-cp / download |"
  echo "|---|---|$(printf -- '---|%.0s' "${tools[@]}")---|---|---|"
  for kind in $KINDS; do
    file_bytes=$(stat -c %s "$CACHE/os-$kind.qcow2")
    for rtt in $RTTS; do
      row="| $kind | $rtt ms |"
      declare -A med=()
      for tool in "${tools[@]}"; do
        read -r -a s <<< "${SECS[$kind,$rtt,$tool]}"
        med[$tool]=$(median "${s[@]}")
        row+=" ${med[$tool]} ($(min "${s[@]}")-$(max "${s[@]}")), sent $(ratio "${BYTES[$kind,$rtt,$tool]}" "$file_bytes")x |"
      done
      r() { [ -n "${med[$1]:-}" ] && [ -n "${med[$2]:-}" ] && ratio "${med[$1]}" "${med[$2]}" || echo -; }
      row+=" $(r jq-convert download) | $(r jq-convert qemu-curl) | $(r jq-cp download) |"
      echo "$row"
    done
  done
} > "$RESULTS"
cat "$RESULTS"
