#!/usr/bin/env bash
# Save/load benchmark on the nginx fixture, side by side in one run: `imgctl save`
# vs `docker save` (Debian's docker.io, its own dockerd and data root) vs `podman
# save`, and `imgctl load` vs `docker load` vs `podman load` of the SAME archive
# (the one `docker save` wrote: what `docker save | imgctl load` users feed it).
# Alternating runs, medians, ratios imgctl/docker printed last (goal <= 0.5 each).
#
# imgctl load verifies every digest and diff ID but does not unpack (layers are
# unpacked at the first run/mount); docker and podman unpack while loading. The
# "load + unpack" line adds `imgctl mount` (extract, verify, mount) for a like-for-like
# figure.
#   Usage: scripts/bench-archive.sh [RUNS]     (default 5; needs root)
#   IMGCTL_BIN=path/to/imgctl skips the release build (a binary built already).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$(id -u)" = 0 ] || { echo "bench-archive: run as root (dockerd, podman --root)" >&2; exit 1; }
command -v dockerd >/dev/null || { echo "bench-archive: dockerd (docker.io) missing" >&2; exit 1; }
if [ -n "${IMGCTL_BIN:-}" ]; then
  bin=$IMGCTL_BIN
else
  cargo build --release --quiet
  bin=${CARGO_TARGET_DIR:-$PWD/target}/release/imgctl
fi
nginx=$(./scripts/fixtures/nginx.sh)
work=$(mktemp -d /var/tmp/imgctl-bench-archive.XXXXXX)
dk=$work/docker
cleanup() {
  if [ -f "$dk/d.pid" ]; then kill "$(cat "$dk/d.pid")" 2>/dev/null || true; sleep 2; fi
  umount -R "$dk/data" 2>/dev/null || true
  podman_in system reset --force >/dev/null 2>&1 || true
  umount -R "$work/podman/root/overlay" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
podman_in() {
  podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" --storage-driver overlay \
    --cgroup-manager cgroupfs --events-backend file "$@"
}
now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
timed() { local out=$1; shift; local t0 t1; t0=$(now); "$@" >/dev/null; t1=$(now); echo "$t1 - $t0" | bc -l >>"$out"; }

mkdir -p "$dk"
dockerd --data-root "$dk/data" --exec-root "$dk/exec" -H "unix://$dk/d.sock" --pidfile "$dk/d.pid" \
  --exec-opt native.cgroupdriver=cgroupfs --bridge none --iptables=false --ip6tables=false \
  >"$dk/log" 2>&1 &
D() { docker -H "unix://$dk/d.sock" "$@"; }
for _ in $(seq 120); do D version >/dev/null 2>&1 && break; sleep 0.5; done
D version >/dev/null

# Every tool holds nginx:latest to start with.
store=$work/imgctl-store
skopeo copy --quiet "oci:$nginx:latest" "oci:$store:docker.io/library/nginx:latest"
IMGCTL_ROOT=$store "$bin" save -o "$work/seed.tar" nginx
D load -q -i "$work/seed.tar" >/dev/null
podman_in load -q -i "$work/seed.tar" >/dev/null
D save -o "$work/docker.tar" nginx:latest
# podman names what it loads from docker's legacy archive its own way: use the ID.
pid=$(podman_in images -q --no-trunc | head -n1)
size=$(stat -c %s "$work/docker.tar")

for t in imgctl docker podman; do : >"$work/save-$t"; : >"$work/load-$t"; done
: >"$work/load-unpack-imgctl"
for i in $(seq "$runs"); do
  sync
  timed "$work/save-imgctl" env IMGCTL_ROOT="$store" "$bin" save -o "$work/out-imgctl.tar" nginx
  timed "$work/save-docker" D save -o "$work/out-docker.tar" nginx:latest
  timed "$work/save-podman" podman_in save -q -o "$work/out-podman.tar" "$pid"
  rm -f "$work"/out-*.tar
  # Loads: the docker-save archive into an empty store / after removing the image.
  sync
  fresh=$work/load-$i
  timed "$work/load-imgctl" env IMGCTL_ROOT="$fresh" "$bin" load -q -i "$work/docker.tar"
  t0=$(now)
  mp=$(IMGCTL_ROOT="$fresh" "$bin" mount nginx)
  t1=$(now)
  last=$(tail -n1 "$work/load-imgctl")
  echo "$last + $t1 - $t0" | bc -l >>"$work/load-unpack-imgctl"
  IMGCTL_ROOT="$fresh" "$bin" umount "$mp" >/dev/null
  rm -rf "$fresh"
  D rmi -f nginx:latest >/dev/null
  D image prune -f >/dev/null
  sync
  timed "$work/load-docker" D load -q -i "$work/docker.tar"
  podman_in rmi -f "$pid" >/dev/null
  sync
  timed "$work/load-podman" podman_in load -q -i "$work/docker.tar"
done

m() { median <"$work/$1"; }
echo "nginx fixture ($(numfmt --to=iec "$size") docker-archive), $runs alternating runs each, release build"
for op in save load; do
  for t in imgctl docker podman; do
    printf '  %s %-6s times (s): %s\n' "$op" "$t" "$(tr '\n' ' ' <"$work/$op-$t")"
  done
done
printf '  median save: imgctl %.3f s, docker %.3f s, podman %.3f s\n' "$(m save-imgctl)" "$(m save-docker)" "$(m save-podman)"
printf '  median load: imgctl %.3f s (+ unpack on mount: %.3f s), docker %.3f s, podman %.3f s\n' \
  "$(m load-imgctl)" "$(m load-unpack-imgctl)" "$(m load-docker)" "$(m load-podman)"
printf 'ratio imgctl/podman: save %.2f, load %.2f, load+unpack %.2f\n' \
  "$(echo "$(m save-imgctl) / $(m save-podman)" | bc -l)" "$(echo "$(m load-imgctl) / $(m load-podman)" | bc -l)" \
  "$(echo "$(m load-unpack-imgctl) / $(m load-podman)" | bc -l)"
printf 'ratio imgctl/docker (goal <= 0.5): save %.2f, load %.2f, load+unpack %.2f\n' \
  "$(echo "$(m save-imgctl) / $(m save-docker)" | bc -l)" "$(echo "$(m load-imgctl) / $(m load-docker)" | bc -l)" \
  "$(echo "$(m load-unpack-imgctl) / $(m load-docker)" | bc -l)"
