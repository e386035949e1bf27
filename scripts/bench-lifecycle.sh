#!/usr/bin/env bash
# Side-by-side figures for detached containers (issue 12), busybox fixture local to
# each tool, no network setup on any (--network none everywhere: a private
# namespace with only lo):
#   run -d      `run -d busybox sleep 1000` until the command runs (the previous
#               container removed before each timed run, outside the timing)
#   exec        `exec C true` into a running container
#   ps (20)     `ps` with 20 running containers
#   nginx       `run -d -p PORT:80 nginx` until `curl http://127.0.0.1:PORT/`
#               answers (a tight curl loop; the previous container removed
#               before each timed run, outside the timing). Here each tool uses
#               its usual bridge network: imgctl its default `bridge` (imgctl0,
#               nft DNAT), podman its default netavark bridge (podman0), docker a
#               user-defined bridge `dkbench0` (its default bridge is off,
#               --bridge=none) published through docker-proxy (--iptables=false:
#               this dockerd never touches the host's firewall).
# against `docker` (Debian's docker.io with its own dockerd: own --data-root,
# --exec-root, socket and pidfile, cgroupfs; never the system socket) and `podman`
# (own --root/--runroot/--tmpdir, runc: crun refuses this hybrid cgroup host;
# explicit nofile/nproc ulimits: no CAP_SYS_RESOURCE here for its defaults). Release build.
# Usage: [IMGCTL_BIN=…] [PARTS="run exec ps nginx"] scripts/bench-lifecycle.sh [RUNS]
# (figures printed, never asserted; PARTS picks the lines to measure)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
parts=" ${PARTS:-run exec ps nginx} "
want() { [[ $parts == *" $1 "* ]]; }
[ "$(id -u)" = 0 ] || { echo "bench-lifecycle: run as root" >&2; exit 1; }
dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
docker=$(command -v docker || echo /usr/bin/docker)
for t in hyperfine skopeo podman python3 curl "$dockerd" "$docker"; do
  command -v "$t" >/dev/null || { echo "bench-lifecycle: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
busybox=$(./scripts/fixtures/busybox.sh)
want nginx && nginx=$(./scripts/fixtures/nginx.sh)
# IMGCTL_BIN=path skips the release build (e.g. a build made elsewhere).
if [ -z "${IMGCTL_BIN:-}" ]; then
  cargo build --release --quiet
  bin=$(pwd)/${CARGO_TARGET_DIR:-target}/release/imgctl
else
  bin=$IMGCTL_BIN
fi
work=$(mktemp -d /var/tmp/imgctl-bench-life.XXXXXX)
sock=$work/docker.sock
dpid=
im="$bin --root $work/imgctl"
pm="podman --root $work/podman --runroot $work/podman-run --storage-driver overlay --cgroup-manager cgroupfs --runtime runc --events-backend none --tmpdir $work/podman-tmp"
dk="$docker -H unix://$sock"
cleanup() {
  $im rm -f $($im ps -aq 2>/dev/null) >/dev/null 2>&1 || true
  $pm rm -f -a >/dev/null 2>&1 || true
  $dk rm -f $($dk ps -aq 2>/dev/null) >/dev/null 2>&1 || true
  $dk network rm benchnet >/dev/null 2>&1 || true
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null || true
  ip link del dkbench0 2>/dev/null || true
  for m in "$work"/imgctl/snapshots/active/*/merged "$work"/imgctl/snapshots/layers/*/fs; do umount "$m" 2>/dev/null || true; done
  # Whatever is still mounted below $work (podman keeps $work/podman/overlay
  # mounted on itself), deepest first.
  awk -v w="$work/" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

skopeo copy --quiet "oci:$busybox:latest" "oci:$work/imgctl:docker.io/library/busybox:latest"
$pm tag "$($pm pull --quiet "oci:$busybox:latest" | tail -1)" docker.io/library/busybox:latest
"$dockerd" --data-root "$work/docker" --exec-root "$work/docker-exec" -H "unix://$sock" \
  --pidfile "$work/docker.pid" --exec-opt native.cgroupdriver=cgroupfs --bridge=none \
  --iptables=false --ip6tables=false >"$work/dockerd.log" 2>&1 &
dpid=$!
for _ in $(seq 50); do $dk info >/dev/null 2>&1 && break; sleep 0.2; done
skopeo copy --quiet "oci:$busybox:latest" "docker-archive:$work/busybox.tar:busybox:latest"
$dk load -q -i "$work/busybox.tar" >/dev/null

if want nginx; then
  skopeo copy --quiet "oci:$nginx:latest" "oci:$work/imgctl:docker.io/library/nginx:latest"
  $pm tag "$($pm pull --quiet "oci:$nginx:latest" | tail -1)" docker.io/library/nginx:latest
  skopeo copy --quiet "oci:$nginx:latest" "docker-archive:$work/nginx.tar:nginx:latest"
  $dk load -q -i "$work/nginx.tar" >/dev/null
  # A subnet no route of the host uses (imgctl takes 10.89.N, podman 10.88).
  dsub=
  for n in $(seq 200 250); do
    ip route | grep -q "^10\.$n\." || { dsub=10.$n.0.0/24; break; }
  done
  [ -n "$dsub" ] || { echo "bench-lifecycle: no free 10.N.0.0/24 for docker's bridge" >&2; exit 1; }
  $dk network create -o com.docker.network.bridge.name=dkbench0 --subnet "$dsub" benchnet >/dev/null
fi

rmall_i="$im rm -f \$($im ps -aq) >/dev/null 2>&1 || true"
rmall_p="$pm rm -f -a >/dev/null 2>&1 || true"
rmall_d="$dk rm -f \$($dk ps -aq) >/dev/null 2>&1 || true"
# Warm each once (and check it works).
$im run -d --network none busybox sleep 1000 >/dev/null
$pm run -d --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 busybox sleep 1000 >/dev/null
$dk run -d --network none busybox sleep 1000 >/dev/null
bash -c "$rmall_i; $rmall_p; $rmall_d"
results=()

if want run; then
  # (one --prepare per command, in the commands' order)
  hyperfine --runs "$runs" --export-json "$work/run.json" \
    --prepare "bash -c '$rmall_i'" --prepare "bash -c '$rmall_p'" --prepare "bash -c '$rmall_d'" \
    -n "imgctl run -d" "$im run -d --network none busybox sleep 1000" \
    -n "podman run -d" "$pm run -d --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 busybox sleep 1000" \
    -n "docker run -d" "$dk run -d --network none busybox sleep 1000" >&2
  bash -c "$rmall_i; $rmall_p; $rmall_d"
  results+=("$work/run.json")
fi

if want nginx; then
  # One free host port per tool (docker-proxy and podman's conmon hold theirs
  # until their container is removed).
  read -r pi pp pd < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
  # `run -d -p` then curl in a tight loop until nginx answers (30 s at most).
  up() { echo "$1 >/dev/null && timeout 30 bash -c 'until curl -sf -o /dev/null http://127.0.0.1:$2/; do :; done'"; }
  run_i="$im run -d -p $pi:80 nginx"
  run_p="$pm run -d -p $pp:80 --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 nginx"
  run_d="$dk run -d --network benchnet -p $pd:80 nginx"
  # Warm (the first imgctl run unpacks nginx) and check each answers.
  for c in "$run_i:$pi" "$run_p:$pp" "$run_d:$pd"; do
    bash -c "$(up "${c%:*}" "${c##*:}")" || { echo "bench-lifecycle: ${c%:*}: nginx does not answer" >&2; exit 1; }
  done
  bash -c "$rmall_i; $rmall_p; $rmall_d"
  hyperfine --runs "$runs" --export-json "$work/nginx.json" \
    --prepare "bash -c '$rmall_i'" --prepare "bash -c '$rmall_p'" --prepare "bash -c '$rmall_d'" \
    -n "imgctl nginx" "$(up "$run_i" "$pi")" \
    -n "podman nginx" "$(up "$run_p" "$pp")" \
    -n "docker nginx" "$(up "$run_d" "$pd")" >&2
  bash -c "$rmall_i; $rmall_p; $rmall_d"
  results+=("$work/nginx.json")
fi

if want exec || want ps; then
  ci=$($im run -d --network none busybox sleep 1000)
  cp=$($pm run -d --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 busybox sleep 1000)
  cd_=$($dk run -d --network none busybox sleep 1000)
fi
if want exec; then
  hyperfine -N --runs "$runs" --warmup 2 --export-json "$work/exec.json" \
    -n "imgctl exec" "$im exec $ci true" \
    -n "podman exec" "$pm exec $cp true" \
    -n "docker exec" "$dk exec $cd_ true" >&2
  results+=("$work/exec.json")
fi

if want ps; then
  for _ in $(seq 19); do
    $im run -d --network none busybox sleep 1000 >/dev/null
    $pm run -d --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 busybox sleep 1000 >/dev/null
    $dk run -d --network none busybox sleep 1000 >/dev/null
  done
  [ "$($im ps -q | wc -l)" = 20 ] || { echo "bench-lifecycle: imgctl ps does not list 20" >&2; exit 1; }
  hyperfine -N --runs "$runs" --warmup 2 --export-json "$work/ps.json" \
    -n "imgctl ps" "$im ps" \
    -n "podman ps" "$pm ps" \
    -n "docker ps" "$dk ps" >&2
  results+=("$work/ps.json")
fi

echo "  load average: $(cut -d' ' -f1-3 /proc/loadavg), $runs runs each, $(nproc) CPUs"
python3 - "${results[@]}" <<'PY'
import json, sys
r = {}
for f in sys.argv[1:]:
    r.update({x["command"]: x for x in json.load(open(f))["results"]})
for k, v in r.items():
    print(f"  {k:16s} median {v['median']*1000:8.1f} ms  mean {v['mean']*1000:8.1f} ms  min {v['min']*1000:8.1f} ms")
for what in ["run -d", "nginx", "exec", "ps"]:
    if f"imgctl {what}" not in r:
        continue
    i = r[f"imgctl {what}"]["median"]
    print(f"  {what:7s} imgctl/docker = {i / r[f'docker {what}']['median']:.2f}x  imgctl/podman = {i / r[f'podman {what}']['median']:.2f}x  (target <= 0.5x docker)")
PY
