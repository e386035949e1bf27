#!/usr/bin/env bash
# Push benchmark: the nginx fixture pushed to an EMPTY repository of a fresh local
# docker-registry by
#   imgctl push (release build; image already in its store),
#   skopeo copy oci:<fixture> docker://...,
#   docker push (Debian's docker.io, its own dockerd: own --data-root/--exec-root/socket,
#                cgroupfs; never the system socket; image pulled into it beforehand),
# alternating in the same run, a new registry for every push (so no tool can skip or
# mount a blob the registry already has); medians and the ratios vs docker and skopeo.
#   Usage: scripts/bench-push.sh [RUNS]   (default 5; root; figures printed, never asserted)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$(id -u)" = 0 ] || { echo "bench-push: run as root" >&2; exit 1; }
for t in skopeo python3 docker-registry /usr/sbin/dockerd /usr/bin/docker; do
  command -v "$t" >/dev/null || { echo "bench-push: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
cargo build --release --quiet
bin=$(pwd)/${CARGO_TARGET_DIR:-target}/release/imgctl
nginx=$(./scripts/fixtures/nginx.sh)
work=$(mktemp -d /var/tmp/imgctl-bench-push.XXXXXX)
sock=$work/docker.sock
dpid=
cleanup() {
  ./scripts/registry.sh stop "$work/seed" || true
  for d in "$work"/reg-*; do [ -d "$d" ] && ./scripts/registry.sh stop "$d"; done
  [ -n "$dpid" ] && kill "$dpid" 2>/dev/null && wait "$dpid" 2>/dev/null || true
  umount -R "$work/docker" 2>/dev/null || true
  rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT
export HOME=$work/home DOCKER_CONFIG=$work/home/.docker XDG_CONFIG_HOME=$work/home/.config
mkdir -p "$HOME"

# The fixture into a seed registry, and from there into imgctl's store and dockerd.
seed=$(./scripts/registry.sh start "$work/seed")
skopeo copy --quiet --dest-tls-verify=false "oci:$nginx:latest" "docker://$seed/library/nginx:latest"
"$bin" --root "$work/imgctl" pull --quiet --no-unpack "$seed/library/nginx:latest" >/dev/null
/usr/sbin/dockerd --data-root "$work/docker" --exec-root "$work/docker-exec" -H "unix://$sock" \
  --pidfile "$work/docker.pid" --exec-opt native.cgroupdriver=cgroupfs --bridge=none \
  --iptables=false --ip6tables=false >"$work/dockerd.log" 2>&1 &
dpid=$!
dk="/usr/bin/docker -H unix://$sock"
for _ in $(seq 100); do $dk info >/dev/null 2>&1 && break; sleep 0.2; done
$dk pull -q "$seed/library/nginx:latest" >/dev/null

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
for tool in imgctl skopeo docker; do : >"$work/$tool.times"; done
for i in $(seq "$runs"); do
  for tool in imgctl skopeo docker; do
    reg=$(./scripts/registry.sh start "$work/reg-$tool-$i")
    dest="$reg/bench/nginx:latest"
    [ "$tool" = docker ] && $dk tag "$seed/library/nginx:latest" "$dest"
    t0=$(now)
    case $tool in
      imgctl) "$bin" --root "$work/imgctl" push --quiet "$seed/library/nginx:latest" "$dest" >/dev/null ;;
      skopeo) skopeo copy --quiet --dest-tls-verify=false "oci:$nginx:latest" "docker://$dest" ;;
      docker) $dk push -q "$dest" >/dev/null ;;
    esac
    t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$work/$tool.times"
    # Every push must have produced a complete image.
    skopeo inspect --tls-verify=false "docker://$dest" >/dev/null
    [ "$tool" = docker ] && $dk rmi -f "$dest" >/dev/null
    ./scripts/registry.sh stop "$work/reg-$tool-$i"
    rm -rf "$work/reg-$tool-$i"
  done
done
mi=$(median <"$work/imgctl.times"); ms=$(median <"$work/skopeo.times"); md=$(median <"$work/docker.times")
echo "nginx fixture push to an empty registry, $runs alternating runs each"
for tool in imgctl skopeo docker; do
  echo "  $tool times (s): $(tr '\n' ' ' <"$work/$tool.times")"
done
printf '  median wall time: imgctl %.3f s, skopeo %.3f s, docker %.3f s\n' "$mi" "$ms" "$md"
printf 'ratio imgctl/docker push (target <= 0.5): %.2f\n' "$(echo "$mi / $md" | bc -l)"
printf 'ratio imgctl/skopeo copy: %.2f\n' "$(echo "$mi / $ms" | bc -l)"
