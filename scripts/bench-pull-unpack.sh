#!/usr/bin/env bash
# Pull-with-unpack benchmark: `imgctl pull` (download, decompression and extraction
# pipelined into overlay snapshots) vs `podman pull` (overlay storage driver) of the
# nginx fixture from the same local registry, in the same run: alternating runs, a fresh
# store for each, medians; the imgctl/podman wall-time ratio is printed last (target
# <= 1.0).
#
# Also prints the bytes file-level dedup saves for two images that share files but no
# layer: the nginx fixture, and the same root filesystem (unpacked by umoci) repacked
# as one layer by scripts/fixtures/mkimage.py (cached as nginx-flat-oci).
#   Usage: scripts/bench-pull-unpack.sh [RUNS]     (default 5; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$(id -u)" = 0 ] || { echo "bench-pull-unpack: run as root (overlay, podman --root)" >&2; exit 1; }
./scripts/install-deps.sh
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/imgctl
nginx=$(./scripts/fixtures/nginx.sh)
cache=${IMGCTL_TESTDATA:-/var/cache/imgctl-testdata}
# Stores live on the same file system for both tools (inode creation dominates here).
work=$(mktemp -d /var/tmp/imgctl-bench.XXXXXX)
cleanup() {
  ./scripts/registry.sh stop "$work/registry" || true
  for d in "$work"/podman-*; do
    [ -d "$d" ] || continue
    podman --root "$d/root" --runroot "$d/run" --storage-driver overlay system reset --force >/dev/null 2>&1 || true
    umount -R "$d/root/overlay" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
reg=$(./scripts/registry.sh start "$work/registry")
image=$reg/library/nginx:latest
skopeo copy --quiet --dest-tls-verify=false "oci:$nginx:latest" "docker://$image"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
podman_in() {
  local d=$1; shift
  podman --root "$d/root" --runroot "$d/run" --storage-driver overlay \
    --cgroup-manager cgroupfs --events-backend file "$@"
}

: >"$work/imgctl.times"; : >"$work/podman.times"
for i in $(seq "$runs"); do
  for tool in imgctl podman; do
    dest="$work/$tool-$i"
    mkdir -p "$dest"
    sync
    t0=$(now)
    if [ "$tool" = imgctl ]; then
      IMGCTL_ROOT="$dest/store" "$bin" pull --quiet "$image" >/dev/null
    else
      podman_in "$dest" pull --quiet --tls-verify=false "docker://$image" >/dev/null
    fi
    t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$work/$tool.times"
    if [ "$tool" = imgctl ]; then
      n=$(find "$dest/store/snapshots/layers" -mindepth 1 -maxdepth 1 -not -name '.*' | wc -l)
      [ "$n" = 2 ] || { echo "bench: imgctl unpacked $n layers, expected 2" >&2; exit 1; }
      rm -rf "$dest"
    else
      podman_in "$dest" system reset --force >/dev/null 2>&1 || true
      umount -R "$dest/root/overlay" 2>/dev/null || true
      rm -rf "$dest"
    fi
  done
done
mi=$(median <"$work/imgctl.times"); mp=$(median <"$work/podman.times")

# Dedup: nginx and the same tree as one layer (no layer in common) in one store.
flat=$cache/nginx-flat-oci
if [ ! -f "$flat/index.json" ]; then
  echo "bench: building $flat (nginx rootfs repacked as one layer)" >&2
  tmp=$(mktemp -d "$cache/nginx-flat.XXXXXX")
  umoci unpack --image "$nginx:latest" "$tmp/bundle" >/dev/null
  python3 ./scripts/fixtures/mkimage.py --base "$tmp/bundle/rootfs" --out "$tmp/oci"
  mv "$tmp/oci" "$flat"; rm -rf "$tmp"
fi
skopeo copy --quiet --dest-tls-verify=false "oci:$flat:latest" "docker://$reg/library/nginx-flat:latest"
IMGCTL_ROOT="$work/dedup" "$bin" pull --quiet "$image" >/dev/null
IMGCTL_ROOT="$work/dedup" "$bin" pull --quiet "$reg/library/nginx-flat:latest" >/dev/null
df_json=$(IMGCTL_ROOT="$work/dedup" "$bin" df --format json)
field() { jq -r ".$1" <<<"$df_json"; }

echo "nginx pull with unpack, $runs alternating runs each (release build; podman overlay driver)"
echo "  imgctl times (s): $(tr '\n' ' ' <"$work/imgctl.times")"
echo "  podman times (s): $(tr '\n' ' ' <"$work/podman.times")"
printf '  median wall time: imgctl %.3f s, podman %.3f s\n' "$mi" "$mp"
echo "dedup, nginx (2 layers) + nginx rootfs repacked as 1 layer, $(field layers) layers unpacked:"
echo "  logical $(field layer_logical_bytes) bytes, on disk $(field layer_on_disk_bytes) bytes, saved by dedup $(field dedup_saved_bytes) bytes"
printf 'ratio imgctl/podman (nginx pull with unpack, wall time, target <= 1.0): %.2f\n' "$(echo "$mi / $mp" | bc -l)"
