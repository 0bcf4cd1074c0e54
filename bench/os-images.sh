# Sourced by bench/run.sh and bench/remote.sh: the 4 GiB OS images, built once into $CACHE
# (os-{plain,deflate,zstd}.qcow2: a GPT disk, an ext4 partition holding about $TARGET_BYTES of this
# machine's /usr, 64 KiB clusters). Needs CACHE, TARGET_BYTES and log().

# stage_usr DIR BYTES: hard links (or copies) of /usr subtrees into DIR, up to about BYTES
stage_usr() {
  local stage=$1 limit=$2 total=0 sz
  rm -rf "$stage"; mkdir -p "$stage"
  for d in /usr/lib/* /usr/share/* /usr/bin /usr/libexec /usr/include; do
    [ -e "$d" ] || continue
    sz=$(du -sb "$d" 2>/dev/null | cut -f1)
    [ $((total + sz)) -gt "$limit" ] && continue
    mkdir -p "$stage$(dirname "$d")"
    cp -a -l "$d" "$stage$(dirname "$d")/" 2>/dev/null || cp -a "$d" "$stage$(dirname "$d")/"
    total=$((total + sz))
  done
  log "staged $total bytes of /usr"
}

build_os_images() {
  [ -f "$CACHE/os-zstd.qcow2" ] && return
  log "building the OS images in $CACHE (once)"
  local stage="$CACHE/stage" part="$CACHE/part.ext4" disk="$CACHE/os.raw" sectors
  stage_usr "$stage" "$TARGET_BYTES"
  truncate -s 4G "$disk"
  sgdisk -n 1:2048:0 -t 1:8300 "$disk" >/dev/null
  sectors=$(sgdisk -i 1 "$disk" | awk '/Last sector/ {print $3}')
  truncate -s $(((sectors - 2048 + 1) * 512)) "$part"
  mkfs.ext4 -q -F -d "$stage" "$part"
  dd if="$part" of="$disk" bs=1M seek=1 conv=notrunc,sparse status=none
  rm -rf "$part" "$stage"
  qemu-img convert -O qcow2 "$disk" "$CACHE/os-plain.qcow2"
  qemu-img convert -c -O qcow2 -o compression_type=zlib "$disk" "$CACHE/os-deflate.qcow2"
  qemu-img convert -c -O qcow2 -o compression_type=zstd "$disk" "$CACHE/os-zstd.qcow2"
  rm -f "$disk"
}
