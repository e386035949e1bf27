#!/usr/bin/env bash
# Load test of issue 15 (Done-when line 1): N `imgctl run --rm --network none
# busybox true` on a tmpfs store and N on an ext4 store (this machine's disk when
# the work directory is on ext4, else a loop-mounted ext4 image), with three
# CPU-burning processes beside them, JOBS runs at a time. A fresh store every
# PER_STORE runs, so the runs that unpack the image are among them. Counts
# failures (any non-zero exit) and what is left mounted, and prints runs/s and the
# load average before and after (figures, never asserted; failures are).
# tests/it/habits_load.rs is the CI-sized version (100 each).
# Usage (root): [IMGCTL_BIN=…] [JOBS=2] [PER_STORE=25] scripts/load-test.sh [N]   (default N=500)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-500}
jobs=${JOBS:-2}
per_store=${PER_STORE:-25}
[ "$(id -u)" = 0 ] || { echo "load-test: run as root" >&2; exit 1; }
for t in skopeo mkfs.ext4 mount umount; do
  command -v "$t" >/dev/null || { echo "load-test: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
busybox=$(./scripts/fixtures/busybox.sh)
# IMGCTL_BIN=path skips the release build (e.g. a build made elsewhere).
if [ -z "${IMGCTL_BIN:-}" ]; then
  cargo build --release --quiet
  bin=$(pwd)/${CARGO_TARGET_DIR:-target}/release/imgctl
else
  bin=$(readlink -f "$IMGCTL_BIN")
fi
work=$(mktemp -d /var/tmp/imgctl-load.XXXXXX)
burners=()
cleanup() {
  for p in "${burners[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  umount -l "$work/tmpfs" 2>/dev/null || true
  umount -l "$work/ext4" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/tmpfs" "$work/ext4"
mount -t tmpfs -o size=2g tmpfs "$work/tmpfs"
if [ "$(stat -f -c %T "$work")" != ext2/ext3 ]; then
  # Not ext4 here: a sparse image file, formatted and loop-mounted.
  truncate -s 4G "$work/ext4.img"
  mkfs.ext4 -q -F "$work/ext4.img"
  mount -o loop "$work/ext4.img" "$work/ext4"
fi

# One worker: runs k, k+jobs, k+2*jobs, ... below n on stores under $1; a line per
# failure in $1/fail.k.
worker() {
  local dir=$1 k=$2 i rc
  for ((i = k; i < n; i += jobs)); do
    rc=0
    "$bin" --root "$dir/store$((i / per_store))" run --rm --network none busybox true \
      >"$dir/out.$k" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
      echo "run $i: exit $rc: $(tr '\n' ' ' <"$dir/out.$k")" >>"$dir/fail.$k"
    fi
  done
}

load() { cut -d' ' -f1 /proc/loadavg; }

one() {
  local what=$1 dir=$2 s
  for ((s = 0; s * per_store < n; s++)); do
    skopeo copy --quiet "oci:$busybox:latest" "oci:$dir/store$s:docker.io/library/busybox:latest"
  done
  local before t0 t1 k pids=()
  before=$(load)
  t0=$(date +%s.%N)
  for ((k = 0; k < jobs; k++)); do
    worker "$dir" "$k" &
    pids+=($!)
  done
  wait "${pids[@]}"
  t1=$(date +%s.%N)
  local failed left active
  failed=$(cat "$dir"/fail.* 2>/dev/null | wc -l)
  left=$(grep -c "$dir/" /proc/self/mountinfo || true)
  active=$(find "$dir"/store*/snapshots/active -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  printf '%s: %d runs, %d failed, %d mounts and %d active snapshots left, %.1f runs/s (%d at a time), load average %s -> %s\n' \
    "$what" "$n" "$failed" "$left" "$active" "$(awk -v n="$n" -v a="$t0" -v b="$t1" 'BEGIN { print n / (b - a) }')" "$jobs" "$before" "$(load)"
  cat "$dir"/fail.* 2>/dev/null | head -5 || true
  [ "$failed" = 0 ] && [ "$left" = 0 ] && [ "$active" = 0 ]
}

for _ in 1 2 3; do
  sh -c 'while :; do :; done' &
  burners+=($!)
done
echo "imgctl $("$bin" --version | cut -d' ' -f2), $(nproc) CPUs, 3 CPU burners, load average $(load) at start"
status=0
one tmpfs "$work/tmpfs" || status=1
one "ext4 ($(findmnt -no SOURCE -T "$work/ext4"))" "$work/ext4" || status=1
exit $status
