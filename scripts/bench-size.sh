#!/usr/bin/env bash
# Side-by-side figures for `imgctl size` on the nginx fixture, in one run (release
# build, hyperfine):
#   imgctl size nginx (from the store; its layers indexed by an earlier report, or by
#   the `imgctl pull` that brought the image in (with docker-registry installed), and
#   "cold": with cache/size removed first, so every layer is decompressed)
#                                                vs  gzip -dc of its layers > /dev/null
#                                                     (the decompression floor)
#   imgctl size nginx (store / OCI layout)       vs  dive --ci on the docker-archive of the
#                                                     same image (archive made beforehand),
#                                                     and skopeo copy + dive --ci (what a dive
#                                                     user runs for an image that is not in Docker)
#   imgctl size 127.0.0.1:PORT/nginx (registry, streamed; with docker-registry installed)
# plus peak RSS of each (GNU time). Figures are printed, never asserted.
# Usage: scripts/bench-size.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
dive=${DIVE:-/opt/dive-venv/bin/dive}
for t in hyperfine skopeo gzip python3 /usr/bin/time "$dive"; do
  command -v "$t" >/dev/null || { echo "bench-size: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
nginx=$(./scripts/fixtures/nginx.sh)
# IMGCTL_BIN=path skips the release build (e.g. a build made elsewhere).
if [ -z "${IMGCTL_BIN:-}" ]; then
  cargo build --release --quiet
  bin=$(pwd)/${CARGO_TARGET_DIR:-target}/release/imgctl
else
  bin=$IMGCTL_BIN
fi
work=$(mktemp -d /var/tmp/imgctl-bench-size.XXXXXX)
reg_pid=
cleanup() {
  [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mapfile -t layers < <(python3 - "$nginx" <<'PY'
import json, sys
d = sys.argv[1]
idx = json.load(open(f"{d}/index.json"))
m = json.load(open(f"{d}/blobs/sha256/" + idx["manifests"][0]["digest"].split(":")[1]))
for l in m["layers"]:
    print(f"{d}/blobs/sha256/" + l["digest"].split(":")[1])
PY
)
# The store: an OCI layout, so skopeo can put the fixture in it directly.
"$bin" --root "$work/store" images >/dev/null
skopeo copy -q "oci:$nginx:latest" "oci:$work/store:docker.io/library/nginx:bench"
skopeo copy -q "oci:$nginx:latest" "docker-archive:$work/nginx.tar"
cd "$work"

cmds=(
  -n "imgctl size (store)" "$bin --root $work/store size --progress quiet nginx:bench"
  -n "imgctl size (store, cold)" "sh -c 'rm -rf $work/store/cache/size && exec $bin --root $work/store size --progress quiet nginx:bench'"
  -n "imgctl size (oci layout)" "$bin --root $work/store size --progress quiet oci:$nginx:latest"
  -n "gzip -dc layers" "gzip -dc ${layers[*]} > /dev/null"
  -n "dive --ci (archive)" "$dive --source docker-archive $work/nginx.tar --ci --lowestEfficiency 0 --highestUserWastedPercent 1"
  -n "skopeo copy + dive --ci" "rm -f $work/n2.tar; skopeo copy -q oci:$nginx:latest docker-archive:$work/n2.tar && $dive --source docker-archive $work/n2.tar --ci --lowestEfficiency 0 --highestUserWastedPercent 1"
)
if command -v docker-registry >/dev/null; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s/reg\nhttp:\n  addr: 127.0.0.1:%s\n' "$work" "$port" > "$work/reg.yml"
  docker-registry serve "$work/reg.yml" >/dev/null 2>&1 &
  reg_pid=$!
  for _ in $(seq 50); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  skopeo copy -q --dest-tls-verify=false "oci:$nginx:latest" "docker://127.0.0.1:$port/nginx:bench"
  cmds+=(-n "imgctl size (registry)" "$bin --root $work/store size --progress quiet 127.0.0.1:$port/nginx:bench")
  # A store the image was pulled into: its layers were indexed by the pull's unpack,
  # and a report only reads those indexes (it writes none on a hit).
  "$bin" --root "$work/pulled" pull -q "127.0.0.1:$port/nginx:bench" >/dev/null
  echo "layer indexes written by imgctl pull: $(ls "$work/pulled/cache/size" | wc -l) (of ${#layers[@]} layers)"
  cmds+=(-n "imgctl size (store, indexed by pull)" "$bin --root $work/pulled size --progress quiet 127.0.0.1:$port/nginx:bench")
fi
hyperfine -N --runs "$runs" --warmup 2 --export-json "$work/size.json" "${cmds[@]}" >/dev/null 2>&1 \
  || hyperfine --runs "$runs" --warmup 2 --export-json "$work/size.json" "${cmds[@]}" >/dev/null

rss() { /usr/bin/time -f %M -o "$work/rss" sh -c "$1" >/dev/null 2>&1 || true; cat "$work/rss"; }
python3 - "$work/size.json" \
  "$(rss "$bin --root $work/store size --progress quiet nginx:bench")" \
  "$(rss "$dive --source docker-archive $work/nginx.tar --ci --lowestEfficiency 0 --highestUserWastedPercent 1")" \
  "$( [ -n "$reg_pid" ] && rss "$bin --root $work/store size --progress quiet 127.0.0.1:$port/nginx:bench" || echo 0)" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
rss_store, rss_dive, rss_reg = (int(x) for x in sys.argv[2:5])
print("imgctl size on the nginx fixture (median wall time):")
for k, v in r.items():
    print(f"  {k:28s} {v:.3f}s")
me = r["imgctl size (store)"]
print(f"  imgctl / gzip -dc floor       = {me / r['gzip -dc layers']:.2f}x  (target <= 1.5x)")
print(f"  imgctl / dive --ci (archive)  = {me / r['dive --ci (archive)']:.2f}x  (target <= 0.25x)")
print(f"  imgctl / skopeo copy + dive   = {me / r['skopeo copy + dive --ci']:.2f}x")
cold = r["imgctl size (store, cold)"]
print(f"  cold (no layer index) / gzip -dc floor = {cold / r['gzip -dc layers']:.2f}x")
print(f"  cold (no layer index) / dive --ci      = {cold / r['dive --ci (archive)']:.2f}x")
lay = r["imgctl size (oci layout)"]
print(f"  cold (OCI layout) / gzip -dc floor     = {lay / r['gzip -dc layers']:.2f}x")
print(f"  cold (OCI layout) / dive --ci          = {lay / r['dive --ci (archive)']:.2f}x")
pulled = r.get("imgctl size (store, indexed by pull)")
if pulled:
    print(f"  indexed by pull / gzip -dc floor       = {pulled / r['gzip -dc layers']:.2f}x  (target <= 1.5x)")
    print(f"  indexed by pull / dive --ci            = {pulled / r['dive --ci (archive)']:.2f}x  (target <= 0.25x)")
if "imgctl size (registry)" in r:
    print(f"  registry / store              = {r['imgctl size (registry)'] / me:.2f}x")
print(f"peak RSS: imgctl (store) {rss_store} KiB, dive {rss_dive} KiB, imgctl (registry) {rss_reg} KiB (target < 65536)")
PY
