#!/usr/bin/env bash
# Pull-with-unpack benchmark (issue 10): the nginx fixture pulled from one local
# docker-registry by, in one run, alternating, a fresh store for each timed run and
# `sync` before it:
#   imgctl pull (default snapshotter: EROFS where the kernel mounts EROFS files),
#   imgctl pull --snapshotter files, imgctl pull --snapshotter erofs,
#   docker pull (Debian's dockerd with its own data-root, exec-root, unix socket and
#     pidfile under the work dir, overlay2, cgroupfs driver; a new daemon per run),
#   podman pull (own --root/--runroot, overlay driver),
#   skopeo copy to an OCI layout (blobs only, no unpack: the download floor).
# Prints per-tool times, medians and ratios to docker pull (targets: default <= 0.5,
# files <= 1.0). Then the bytes file-level dedup saves for two images that share
# files but no layer (files snapshotter).
#   Usage: [IMGCTL_BIN=path] scripts/bench-pull-unpack.sh [RUNS]   (default 5; needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$(id -u)" = 0 ] || { echo "bench-pull-unpack: run as root (mounts, dockerd, podman --root)" >&2; exit 1; }
for t in skopeo podman dockerd docker jq bc; do
  command -v "$t" >/dev/null || { echo "bench-pull-unpack: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
# IMGCTL_BIN: benchmark that binary instead of building this tree's release build.
if [ -z "${IMGCTL_BIN:-}" ]; then cargo build --release --quiet; fi
bin=${IMGCTL_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/imgctl}
nginx=$(./scripts/fixtures/nginx.sh)
cache=${IMGCTL_TESTDATA:-/var/cache/imgctl-testdata}
# Every store lives on the same file system (inode creation dominates here).
work=$(mktemp -d /var/tmp/imgctl-bench.XXXXXX)
dockerd_pid=
stop_dockerd() {
  [ -n "$dockerd_pid" ] || return 0
  kill "$dockerd_pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$dockerd_pid" 2>/dev/null || true
  dockerd_pid=
}
umount_under() {
  # Deepest first; only mounts below our own work dir.
  awk -v p="$1/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
}
cleanup() {
  stop_dockerd
  ./scripts/registry.sh stop "$work/registry" || true
  for d in "$work"/podman-*; do
    [ -d "$d" ] || continue
    podman --root "$d/root" --runroot "$d/run" --storage-driver overlay system reset --force >/dev/null 2>&1 || true
  done
  umount_under "$work"
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
start_dockerd() {
  local d=$1
  mkdir -p "$d/root" "$d/exec"
  dockerd --data-root "$d/root" --exec-root "$d/exec" -H "unix://$d/docker.sock" \
    --pidfile "$d/docker.pid" --storage-driver overlay2 \
    --exec-opt native.cgroupdriver=cgroupfs --bridge none --iptables=false \
    --ip6tables=false >"$d/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 300); do
    docker -H "unix://$d/docker.sock" version >/dev/null 2>&1 && return 0
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "bench: dockerd did not start; see $d/dockerd.log" >&2
  cat "$d/dockerd.log" >&2
  exit 1
}

tools="imgctl imgctl-files imgctl-erofs docker podman skopeo"
for t in $tools; do : >"$work/$t.times"; done
for i in $(seq "$runs"); do
  # Rotate the order each run so no tool always follows the same one.
  order=$(echo "$tools" | tr ' ' '\n' | awk -v k=$(( (i - 1) % 6 )) '{a[NR]=$0} END {for (j=0;j<NR;j++) print a[(j+k)%NR+1]}')
  for tool in $order; do
    dest="$work/$tool-$i"
    mkdir -p "$dest"
    [ "$tool" = docker ] && start_dockerd "$dest"
    sync
    t0=$(now)
    case $tool in
      imgctl) IMGCTL_ROOT="$dest/store" "$bin" pull --quiet "$image" >/dev/null ;;
      imgctl-files) IMGCTL_ROOT="$dest/store" "$bin" pull --quiet --snapshotter files "$image" >/dev/null ;;
      imgctl-erofs) IMGCTL_ROOT="$dest/store" "$bin" pull --quiet --snapshotter erofs "$image" >/dev/null ;;
      docker) docker -H "unix://$dest/docker.sock" pull --quiet "$image" >/dev/null ;;
      podman) podman_in "$dest" pull --quiet --tls-verify=false "docker://$image" >/dev/null ;;
      skopeo) skopeo copy --quiet --src-tls-verify=false "docker://$image" "oci:$dest/oci:latest" ;;
    esac
    t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$work/$tool.times"
    case $tool in
      imgctl*)
        n=$(find "$dest/store/snapshots/layers" -mindepth 1 -maxdepth 1 -not -name '.*' | wc -l)
        [ "$n" = 2 ] || { echo "bench: $tool unpacked $n layers, expected 2" >&2; exit 1; }
        e=$(find "$dest/store/snapshots/layers" -name layer.erofs | wc -l)
        [ "$tool" = imgctl-files ] && [ "$e" != 0 ] && { echo "bench: files pull made EROFS images" >&2; exit 1; }
        [ "$tool" = imgctl-erofs ] && [ "$e" != 2 ] && { echo "bench: erofs pull made $e EROFS images" >&2; exit 1; }
        [ "$tool" = imgctl ] && echo "$e" >"$work/default-erofs-layers" ;;
      docker)
        docker -H "unix://$dest/docker.sock" image inspect "$image" >/dev/null
        stop_dockerd ;;
      podman) podman_in "$dest" system reset --force >/dev/null 2>&1 || true ;;
    esac
    umount_under "$dest"
    rm -rf "$dest"
  done
done
declare -A med
for t in $tools; do med[$t]=$(median <"$work/$t.times"); done

# Dedup (files snapshotter): nginx and the same tree as one layer (no layer in common).
flat=$cache/nginx-flat-oci
if [ ! -f "$flat/index.json" ]; then
  echo "bench: building $flat (nginx rootfs repacked as one layer)" >&2
  tmp=$(mktemp -d "$cache/nginx-flat.XXXXXX")
  umoci unpack --image "$nginx:latest" "$tmp/bundle" >/dev/null
  python3 ./scripts/fixtures/mkimage.py --base "$tmp/bundle/rootfs" --out "$tmp/oci"
  mv "$tmp/oci" "$flat"; rm -rf "$tmp"
fi
skopeo copy --quiet --dest-tls-verify=false "oci:$flat:latest" "docker://$reg/library/nginx-flat:latest"
IMGCTL_ROOT="$work/dedup" "$bin" pull --quiet --snapshotter files "$image" >/dev/null
IMGCTL_ROOT="$work/dedup" "$bin" pull --quiet --snapshotter files "$reg/library/nginx-flat:latest" >/dev/null
df_json=$(IMGCTL_ROOT="$work/dedup" "$bin" df --format json)
field() { jq -r ".$1" <<<"$df_json"; }

echo "nginx pull with unpack from a local registry, $runs alternating runs each (release build; fresh store per run, sync before each)"
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
echo "  imgctl default snapshotter made $(cat "$work/default-erofs-layers") of 2 layers as EROFS images"
for t in $tools; do
  printf '  %-13s times (s): %s\n' "$t" "$(tr '\n' ' ' <"$work/$t.times")"
done
for t in $tools; do
  printf '  %-13s median %.3f s   ratio to docker pull %.2f\n' "$t" "${med[$t]}" "$(echo "${med[$t]} / ${med[docker]}" | bc -l)"
done
echo "dedup (files snapshotter), nginx (2 layers) + nginx rootfs repacked as 1 layer, $(field layers) layers unpacked:"
echo "  logical $(field layer_logical_bytes) bytes, on disk $(field layer_on_disk_bytes) bytes, saved by dedup $(field dedup_saved_bytes) bytes"
printf 'ratio imgctl default/docker (target <= 0.5): %.2f\n' "$(echo "${med[imgctl]} / ${med[docker]}" | bc -l)"
printf 'ratio imgctl files/docker (target <= 1.0): %.2f\n' "$(echo "${med[imgctl-files]} / ${med[docker]}" | bc -l)"
