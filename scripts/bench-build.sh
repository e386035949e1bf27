#!/usr/bin/env bash
# Side-by-side build figures on testdata/build/multistage (the shared multi-stage
# benchmark Buildfile and its context), base image (busybox fixture) already local
# to every builder:
#   imgctl build   vs  buildah bud --layers  vs  docker build (Debian's docker.io,
#   classic builder, its own dockerd: own --data-root/--exec-root/socket, cgroupfs;
#   never the system socket)
# cold = --no-cache on every builder; cached = a rebuild with everything cached.
# RUN steps use the host network on all three. Peak RSS of imgctl during a cold build
# from /usr/bin/time. Usage: scripts/bench-build.sh [RUNS]  (figures printed, never asserted)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
[ "$(id -u)" = 0 ] || { echo "bench-build: run as root" >&2; exit 1; }
for t in hyperfine buildah skopeo python3 /usr/bin/time /usr/sbin/dockerd /usr/bin/docker; do
  command -v "$t" >/dev/null || { echo "bench-build: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
busybox=$(./scripts/fixtures/busybox.sh)
cargo build --release --quiet
bin=$(pwd)/${CARGO_TARGET_DIR:-target}/release/imgctl
work=$(mktemp -d /var/tmp/imgctl-bench-build.XXXXXX)
ctx=$work/ctx
mkdir -p "$ctx"
cp testdata/build/multistage/Buildfile testdata/build/multistage/hello.txt "$ctx/"
sock=$work/docker.sock
dpid=
cleanup() {
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null || true
  for m in "$work"/imgctl/snapshots/active/*/merged "$work"/imgctl/snapshots/layers/*/fs; do umount "$m" 2>/dev/null || true; done
  buildah --root "$work/buildah" --runroot "$work/buildah-run" rm --all >/dev/null 2>&1 || true
  umount -R "$work/buildah" 2>/dev/null || true
  umount -R "$work/docker" 2>/dev/null || true
  umount -R "$work/docker-exec" 2>/dev/null || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# Base image into each builder's own store.
skopeo copy --quiet "oci:$busybox:latest" "oci:$work/imgctl:docker.io/library/busybox:latest"
ba="buildah --root $work/buildah --runroot $work/buildah-run --storage-driver overlay"
$ba pull --quiet "oci:$busybox:latest" >/dev/null
$ba tag "$($ba images -q | head -1)" docker.io/library/busybox:latest
/usr/sbin/dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" -H "unix://$sock" \
  --pidfile "$work/docker.pid" --exec-opt native.cgroupdriver=cgroupfs --bridge=none \
  --iptables=false --ip6tables=false >"$work/dockerd.log" 2>&1 &
dpid=$!
dk="/usr/bin/docker -H unix://$sock"
for _ in $(seq 50); do $dk info >/dev/null 2>&1 && break; sleep 0.2; done
skopeo copy --quiet "oci:$busybox:latest" "docker-archive:$work/busybox.tar:busybox:latest"
$dk load -q -i "$work/busybox.tar" >/dev/null
export DOCKER_BUILDKIT=0 BUILDAH_LAYERS=true

# Each builder's command line, extra flags before the context (buildah stops at it).
i_build() { echo "$bin --root $work/imgctl build --progress quiet -t bench:1 $* $ctx"; }
b_build() {
  echo "$ba bud --quiet --layers --network host --runtime runc --cgroup-manager cgroupfs -t bench:1 -f $ctx/Buildfile $* $ctx"
}
d_build() { echo "$dk build -q --network host -t bench:1 -f $ctx/Buildfile $* $ctx"; }
# Warm every builder once (and check each build works) before timing.
$(i_build) >/dev/null
$(b_build) >/dev/null
$(d_build) >/dev/null

hyperfine --runs "$runs" --export-json "$work/cold.json" \
  -n "imgctl cold" "$(i_build --no-cache)" \
  -n "buildah cold" "$(b_build --no-cache)" \
  -n "docker cold" "$(d_build --no-cache)" >&2
hyperfine --runs "$runs" --warmup 1 --export-json "$work/cached.json" \
  -n "imgctl cached" "$(i_build)" \
  -n "buildah cached" "$(b_build)" \
  -n "docker cached" "$(d_build)" >&2
rss=$( { /usr/bin/time -f '%M' $(i_build --no-cache) >/dev/null; } 2>&1 | tail -1)

python3 - "$work/cold.json" "$work/cached.json" "$rss" <<'PY'
import json, sys
r = {}
for f in sys.argv[1:3]:
    r.update({x["command"]: x["median"] for x in json.load(open(f))["results"]})
for k, v in r.items():
    print(f"  {k:16s} median {v:.3f}s")
print(f"  cold:   imgctl / buildah bud --layers = {r['imgctl cold'] / r['buildah cold']:.2f}x  (target <= 0.5x)")
print(f"  cold:   imgctl / docker build         = {r['imgctl cold'] / r['docker cold']:.2f}x  (target <= 0.5x)")
print(f"  cached: imgctl / docker build         = {r['imgctl cached'] / r['docker cached']:.2f}x  (target <= 0.5x)")
print(f"  cached: imgctl / buildah bud --layers = {r['imgctl cached'] / r['buildah cached']:.2f}x")
print(f"  imgctl peak RSS during a cold build: {int(sys.argv[3]) / 1024:.1f} MiB")
PY
