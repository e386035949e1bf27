#!/usr/bin/env bash
# Start-up time of `imgctl run --rm ... true` side by side with `crun run` of an
# equivalent bundle and `podman run --rm` of the same filesystem as an image.
# Usage (root): scripts/benches/run-startup.sh [path/to/imgctl]   (default: target/release/imgctl)
# RUNS=N sets hyperfine's run count (default 50).
#
# Host quirks handled here, not hidden:
# - crun 1.8 refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported, drop
#   all controllers from cgroupv2"); so ALL the commands compared (imgctl, crun, podman)
#   run through the same wrapper: one private mount namespace (`unshare -m`) in which
#   the hugetlb-only /sys/fs/cgroup/unified is unmounted (no per-run cost), one
#   hyperfine run. The last line is imgctl's mean over crun's (goal: <= 1.25).
# - podman asks crun/runc for RLIMIT_NOFILE 1048576 and RLIMIT_NPROC above the hard
#   limit, which fails without CAP_SYS_RESOURCE; explicit --ulimit values are given,
#   and runc is used because crun refuses the hybrid host.
set -euo pipefail
IMGCTL=${1:-${CARGO_TARGET_DIR:-target}/release/imgctl}
IMGCTL=$(readlink -f "$IMGCTL")
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/imgctl-bench.XXXXXX)
cleanup() {
  "$here/scripts/registry.sh" stop "$work/registry"
  podman --root "$work/podman" --runroot "$work/podman-run" rmi -af >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# The busybox test image, pushed into a local registry and pulled from there by
# imgctl (into its store, unpacked) and by podman; crun runs `imgctl bundle` of it.
layout=$("$here/scripts/fixtures/busybox.sh")
reg=$("$here/scripts/registry.sh" start "$work/registry")
skopeo copy --quiet --dest-tls-verify=false "oci:$layout:latest" "docker://$reg/library/busybox:latest"
image=$reg/library/busybox:latest
export IMGCTL_ROOT=$work/store
"$IMGCTL" pull --quiet "$image" >/dev/null
"$IMGCTL" bundle "$image" "$work/bundle" /bin/true >/dev/null
P="podman --root $work/podman --runroot $work/podman-run --storage-driver overlay"
$P pull -q --tls-verify=false "$image" >/dev/null
echo "image: $image (busybox test image, pulled)"
nofile=$(ulimit -Hn)
unshare -m sh -c "
  if grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then umount /sys/fs/cgroup/unified; fi
  hyperfine -N --warmup 5 --runs ${RUNS:-50} --export-markdown '$work/result.md' --export-json '$work/result.json' \
    -n 'imgctl run --rm' '$IMGCTL run --rm $image /bin/true' \
    -n 'imgctl run --rm --network none' '$IMGCTL run --rm --network none $image /bin/true' \
    -n 'crun run' 'crun --cgroup-manager=cgroupfs run --bundle $work/bundle bench-crun' \
    -n 'podman run --rm (runc)' '$P --runtime runc run --rm --ulimit nofile=$nofile:$nofile --ulimit nproc=1024:1024 $image /bin/true'
"
cat "$work/result.md"
# The same two commands again, alternated run by run (imgctl, crun, imgctl, ...):
# on a shared host the load drifts within a hyperfine block; alternation spreads
# it over both. ALT_RUNS=0 skips it.
if [ "${ALT_RUNS:-40}" -gt 0 ]; then
  unshare -m sh -c "
    if grep -q ' /sys/fs/cgroup/unified ' /proc/self/mountinfo; then umount /sys/fs/cgroup/unified; fi
    python3 '$here/scripts/benches/alternate.py' ${ALT_RUNS:-40} 3 \
      'imgctl run --rm=$IMGCTL run --rm $image /bin/true' \
      'imgctl run --rm --network none=$IMGCTL run --rm --network none $image /bin/true' \
      'crun run=crun --cgroup-manager=cgroupfs run --bundle $work/bundle bench-crun'
  "
fi
python3 - "$work/result.json" <<'PY'
import json, sys
res = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
c = res["crun run"]
# The bundle crun runs has no network; imgctl's default is the bridge (veth + nft per
# container), so `--network none` is the like-for-like line.
for name in ("imgctl run --rm --network none", "imgctl run --rm"):
    i = res[name]
    for k in ("mean", "median", "min"):
        print(f"ratio {name} / crun run ({k}): {i[k] / c[k]:.2f}")
PY
