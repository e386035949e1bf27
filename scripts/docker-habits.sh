#!/usr/bin/env bash
# Issue 15's side-by-side table: everyday Docker commands as a Docker user types
# them, and what imgctl does with the same words. Every row is RUN here, on a
# fresh store (busybox from the offline fixture), a local docker-registry with
# htpasswd auth, and checked: "works" means the command succeeded AND its effect
# was checked (output, state, a curl answer); a command imgctl does not have must
# print ONE line saying what to type instead and exit 125, and that line is the
# result. Anything else is reported as FAILS and the script exits 1.
# Prints a Markdown table on stdout (docs/docker-habits.md holds a copy).
# Usage: [IMGCTL_BIN=path] scripts/docker-habits.sh     (root; ~1 min)
set -uo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "docker-habits: run as root" >&2; exit 1; }
for t in skopeo docker-registry htpasswd curl script python3; do
  command -v "$t" >/dev/null || { echo "docker-habits: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
if [ -z "${IMGCTL_BIN:-}" ]; then
  cargo build --quiet || exit 1
  IMGCTL_BIN=$(pwd)/${CARGO_TARGET_DIR:-target}/debug/imgctl
fi
busybox=$(./scripts/fixtures/busybox.sh) || exit 1
work=$(mktemp -d /var/tmp/imgctl-habits.XXXXXX)
bin=$work/bin
mkdir -p "$bin" && ln -s "$IMGCTL_BIN" "$bin/imgctl"
export PATH=$bin:$PATH IMGCTL_ROOT=$work/store DOCKER_CONFIG=$work/docker-config NO_COLOR=1
net=habits$$
cleanup() {
  imgctl rm -f $(imgctl ps -aq 2>/dev/null) >/dev/null 2>&1 || true
  imgctl network rm "$net" >/dev/null 2>&1 || true
  [ -f "$work/reg/pid" ] && kill "$(cat "$work/reg/pid")" 2>/dev/null
  for m in "$work"/store/snapshots/active/*/merged "$work"/store/snapshots/layers/*/fs; do
    umount "$m" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

skopeo copy --quiet "oci:$busybox:latest" "oci:$IMGCTL_ROOT:docker.io/library/busybox:latest" || exit 1
# A registry with basic auth (plain HTTP on 127.0.0.1, as Docker allows).
mkdir -p "$work/reg/storage"
htpasswd -Bbn habits s3cret >"$work/reg/htpasswd" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/reg/config.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/reg/storage}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
auth: {htpasswd: {realm: habits, path: $work/reg/htpasswd}}
YAML
docker-registry serve "$work/reg/config.yml" >"$work/reg/log" 2>&1 &
echo $! >"$work/reg/pid"
reg=127.0.0.1:$port
for _ in $(seq 100); do curl -s -o /dev/null "http://$reg/v2/" && break; sleep 0.1; done
web_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$work/ctx" "$work/data"
printf 'FROM busybox AS base\nRUN echo base > /stage\nFROM base\nRUN echo final > /stage\n' >"$work/ctx/Dockerfile"
echo from-the-host >"$work/data/x"
cd "$work"

n=0 failed=0
echo "| # | as typed for docker | as typed for imgctl | imgctl's result |"
echo "|---|---|---|---|"
# row DOCKER IMGCTL CHECK [SHOWN]: run IMGCTL (bash); "works" when it exits 0
# and CHECK (bash, sees $out $err $rc) holds. SHOWN: the imgctl command as a
# user types it, when IMGCTL also sets something up or feeds a terminal.
cell() { local c=${1//|/\\|}; printf '`%s`' "$c"; }
row() {
  local docker=$1 cmd=$2 check=$3 shown=${4:-$2} result
  n=$((n + 1))
  out=$(bash -c "$cmd" 2>"$work/err" </dev/null); rc=$?
  err=$(cat "$work/err")
  # (no pipefail in checks: `grep -q` may close a pipe before its writer ends)
  if [ "$rc" = 0 ] && (set +o pipefail; eval "$check"); then
    result=works
  else
    result="FAILS (exit $rc, check: $check): $(printf '%s' "$err$out" | tr '\n' ' ' | cut -c1-160)"
    failed=$((failed + 1))
  fi
  printf '| %s | %s | %s | %s |\n' "$n" "$(cell "$docker")" "$(cell "$shown")" "$result"
}
# instead DOCKER IMGCTL: a command imgctl lacks; one line on stderr, exit 125.
instead() {
  local docker=$1 cmd=$2 result
  n=$((n + 1))
  out=$(bash -c "$cmd" 2>"$work/err" </dev/null); rc=$?
  err=$(cat "$work/err")
  if [ "$rc" = 125 ] && [ -z "$out" ] && [ "$(wc -l <"$work/err")" = 1 ]; then
    result="not a command; prints: ${err#imgctl: }"
  else
    result="FAILS (exit $rc, $(wc -l <"$work/err") lines): $(printf '%s' "$err" | tr '\n' ' ' | cut -c1-160)"
    failed=$((failed + 1))
  fi
  printf '| %s | %s | %s | %s |\n' "$n" "$(cell "$docker")" "$(cell "$cmd")" "${result//|/\\|}"
}
until_ok() { for _ in $(seq 100); do eval "$1" && return 0; sleep 0.1; done; return 1; }
st() { imgctl inspect --format '{{.State.Status}}' "$1" 2>/dev/null; }

row "docker login $reg -u habits -p s3cret" "imgctl login $reg -u habits -p s3cret" \
  'grep -q "$reg" "$DOCKER_CONFIG/config.json"'
row "docker tag busybox $reg/habits/busybox:1" "imgctl tag busybox $reg/habits/busybox:1" \
  'imgctl images | grep -q "$reg/habits/busybox"'
row "docker push $reg/habits/busybox:1" "imgctl push $reg/habits/busybox:1" \
  'curl -sf -u habits:s3cret "http://$reg/v2/habits/busybox/tags/list" | grep -q "\"1\""'
row "docker rmi $reg/habits/busybox:1" "imgctl rmi $reg/habits/busybox:1" \
  '! imgctl images | grep -q "$reg/habits/busybox"'
row "docker pull $reg/habits/busybox:1" "imgctl pull $reg/habits/busybox:1" \
  'imgctl images | grep -q "$reg/habits/busybox"'
row "docker images" "imgctl images" \
  '[ "$(echo "$out" | head -1 | tr -s " ")" = "REPOSITORY TAG IMAGE ID CREATED SIZE" ] && echo "$out" | grep -q "^busybox "'
row "docker images -q" "imgctl images -q" \
  'echo "$out" | grep -Eqx "[0-9a-f]{12}" && ! echo "$out" | grep -Eqvx "[0-9a-f]{12}"'
row "docker run -it busybox sh" \
  "printf 'echo hi-from-a-tty; tty; exit 3\\n' | script -qec 'imgctl run -it --rm busybox sh' /dev/null; [ \$? = 3 ]" \
  'echo "$out" | grep -q "^hi-from-a-tty" && echo "$out" | grep -q "^/dev/"' \
  "imgctl run -it busybox sh"
row "docker run -d -p $web_port:80 --name web busybox sh -c '… httpd …'" \
  "imgctl run -d -p $web_port:80 --name web busybox sh -c 'mkdir /w; echo hello-web > /w/index.html; exec httpd -f -p 80 -h /w'" \
  'until_ok "curl -sf http://127.0.0.1:$web_port/ | grep -q hello-web"' \
  "imgctl run -d -p $web_port:80 --name web busybox sh -c '… httpd …'"
row "docker ps" "imgctl ps" 'echo "$out" | grep -q " web$" && echo "$out" | grep -q "$web_port->80/tcp"'
row "docker exec -it web sh" \
  "printf 'echo hi-from-exec; exit\\n' | script -qec 'imgctl exec -it web sh' /dev/null" \
  'echo "$out" | grep -q "^hi-from-exec"' "imgctl exec -it web sh"
row "docker logs -f talker" \
  "imgctl run -d --name talker busybox sh -c 'echo one; sleep 1; echo two' >/dev/null && imgctl logs -f talker" \
  '[ "$out" = "$(printf "one\ntwo")" ]' "imgctl logs -f talker"
row "docker ps -a" "imgctl ps -a" 'echo "$out" | grep -q "Exited (0).* talker$"'
row "docker wait talker" "imgctl wait talker" '[ "$out" = 0 ]'
row "docker stop web" "imgctl stop -t 3 web" '[ "$(st web)" = exited ]'
row "docker start web" "imgctl start web" 'until_ok "curl -sf http://127.0.0.1:$web_port/ | grep -q hello-web"'
row "docker inspect --format '{{.State.Status}}' web" "imgctl inspect --format '{{.State.Status}}' web" \
  '[ "$out" = running ]'
row "docker kill -s HUP trapper" \
  "imgctl run -d --name trapper busybox sh -c 'trap \"echo got-hup; exit 9\" HUP; while :; do sleep 0.1; done' >/dev/null && sleep 0.5 && imgctl kill -s HUP trapper" \
  '[ "$(imgctl wait trapper)" = 9 ] && imgctl logs trapper | grep -q got-hup' \
  "imgctl kill -s HUP trapper"
row "docker rm -f web" "imgctl rm -f web" '! imgctl ps -a | grep -q " web$"'
if imgctl create --help >/dev/null 2>&1; then
  row "docker create --name later busybox echo hi && docker start -a later" \
    "imgctl create --name later busybox echo hi && imgctl start -a later" \
    '[ "$(echo "$out" | tail -1)" = hi ] && [ "$(st later)" = exited ]'
else # `create` comes with another branch; until it is merged:
  instead "docker create --name later busybox echo hi" "imgctl create --name later busybox echo hi"
fi
row "docker history busybox" "imgctl history busybox" 'echo "$out" | head -1 | grep -q "^IMAGE *CREATED"'
row "docker save -o busybox.tar busybox" "imgctl save -o busybox.tar busybox" \
  'tar -tf busybox.tar | grep -q manifest.json'
row "docker load -i busybox.tar" "imgctl rmi busybox >/dev/null && imgctl load -i busybox.tar" \
  'imgctl images | grep -q "^busybox "' "imgctl load -i busybox.tar"
row "docker build -t habits:1 ctx" "imgctl build -q -t habits:1 ctx" \
  '[ "$(imgctl run --rm habits:1 cat /stage)" = final ]'
row "docker build --target base -t habits:base ctx" "imgctl build -q --target base -t habits:base ctx" \
  '[ "$(imgctl run --rm habits:base cat /stage)" = base ]'
row "docker run --rm -v \$PWD/data:/data busybox cat /data/x" "imgctl run --rm -v \$PWD/data:/data busybox cat /data/x" \
  '[ "$out" = from-the-host ]'
row "docker network create $net" "imgctl network create $net" 'imgctl network inspect "$net" >/dev/null'
row "docker network ls" "imgctl network ls" 'echo "$out" | grep -q "$net" && echo "$out" | grep -q bridge'
row "docker stats --no-stream" \
  "imgctl run -d --name busy busybox sleep 1000 >/dev/null && imgctl stats --no-stream" 'echo "$out" | grep -q " busy "' \
  "imgctl stats --no-stream"
instead "docker cp busy:/etc/hostname ." "imgctl cp busy:/etc/hostname ."
instead "docker volume create data" "imgctl volume create data"
instead "docker port busy" "imgctl port busy"
instead "docker top busy" "imgctl top busy"
instead "docker rename busy idle" "imgctl rename busy idle"
row "docker system df" "imgctl system df" 'echo "$out" | grep -qi "images"'
row "docker system prune -f" \
  "imgctl network rm $net >/dev/null && imgctl rm -f busy >/dev/null && imgctl system prune -f" \
  '[ -z "$(imgctl ps -aq)" ]' "imgctl system prune -f"

echo
echo "$n rows, $failed failing; imgctl $("$IMGCTL_BIN" --version | cut -d' ' -f2), $(date -u +%Y-%m-%d), load average $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$failed" = 0 ]
