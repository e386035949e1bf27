#!/usr/bin/env bash
# Start-up time of `imgctl run --rm ... true` side by side with `crun run` of an
# equivalent bundle and `podman run --rm` of the same filesystem as an image.
# Usage (root): scripts/benches/run-startup.sh [path/to/imgctl]   (default: target/release/imgctl)
#
# Host quirks handled here, not hidden:
# - crun 1.8 refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported, drop
#   all controllers from cgroupv2"); it is run inside a private mount namespace in
#   which the hugetlb-only /sys/fs/cgroup/unified is unmounted (no per-run cost).
# - podman asks crun/runc for RLIMIT_NOFILE 1048576 and RLIMIT_NPROC above the hard
#   limit, which fails without CAP_SYS_RESOURCE; explicit --ulimit values are given,
#   and runc is used because crun refuses the hybrid host.
set -euo pipefail
IMGCTL=${1:-${CARGO_TARGET_DIR:-target}/release/imgctl}
IMGCTL=$(readlink -f "$IMGCTL")
work=$(mktemp -d /tmp/imgctl-bench.XXXXXX)
trap 'rm -rf "$work"; podman rmi -f localhost/imgctl-bench:latest ${id:-} >/dev/null 2>&1 || true' EXIT
# The busybox test image (an OCI layout) when present, unpacked with umoci for
# imgctl and crun and loaded as is into podman; else a rootfs from busybox-static.
layout=${IMGCTL_TESTDATA:-/var/cache/imgctl-testdata}/busybox-oci
rootfs=$work/rootfs
if [ -f "$layout/index.json" ] && command -v umoci >/dev/null; then
  umoci unpack --image "$layout:latest" "$work/unpacked" >/dev/null
  rootfs=$work/unpacked/rootfs
  id=$(podman pull -q "oci:$layout:latest" | tail -1)
  podman tag "$id" localhost/imgctl-bench:latest
  echo "image: $layout (busybox test image)"
else
  mkdir -p "$rootfs"/{bin,etc,tmp}
  cp /bin/busybox "$rootfs/bin/busybox"
  for a in sh true; do ln -s busybox "$rootfs/bin/$a"; done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
  echo 'root:x:0:' >"$rootfs/etc/group"
  tar -C "$rootfs" -cf "$work/rootfs.tar" .
  podman import "$work/rootfs.tar" localhost/imgctl-bench:latest >/dev/null
  echo "image: busybox-static rootfs"
fi
export IMGCTL_ROOT=$work/store
"$IMGCTL" bundle --rootfs "$rootfs" "$work/bundle" /bin/true >/dev/null
nofile=$(ulimit -Hn)
unshare -m sh -c "
  if grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then umount /sys/fs/cgroup/unified; fi
  hyperfine -N --warmup 5 --runs ${RUNS:-50} --export-markdown '$work/result.md' \
    -n 'imgctl run --rm' '$IMGCTL run --rm --rootfs $rootfs /bin/true' \
    -n 'crun run' 'crun --cgroup-manager=cgroupfs run --bundle $work/bundle bench-crun' \
    -n 'podman run --rm (runc)' 'podman --runtime runc run --rm --ulimit nofile=$nofile:$nofile --ulimit nproc=1024:1024 localhost/imgctl-bench:latest /bin/true'
"
cat "$work/result.md"
