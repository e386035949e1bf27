#!/usr/bin/env bash
# Side-by-side unpack figures on the nginx fixture (run as root, release build):
#   imgctl unpack (+ overlay mount; layers as files, with and without the dedup pass,
#   and as EROFS images)   vs  umoci unpack  vs  tar -xzf of the same layers,
# each into a fresh directory on the same file system, RUNS times, with hyperfine (the
# previous run's tree is deleted and synced before each timed run, so no run pays for
# another's writeback);
# then the bytes file-level dedup saves for two images that share files but no layer
# (nginx, and the same root filesystem exported and re-packed as one layer).
# Usage: scripts/bench-unpack.sh [RUNS]   (figures are printed, never asserted)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
[ "$(id -u)" = 0 ] || { echo "bench-unpack: run as root (overlay mounts, chown)" >&2; exit 1; }
for t in hyperfine umoci tar python3; do
  command -v "$t" >/dev/null || { echo "bench-unpack: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done
nginx=$(./scripts/fixtures/nginx.sh)
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-target}/release/imgctl
work=$(mktemp -d /var/tmp/imgctl-bench.XXXXXX)
cleanup() {
  for m in "$work"/*/snapshots/active/*/merged "$work"/*/snapshots/layers/*/fs; do umount "$m" 2>/dev/null || true; done
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
entries=0
for l in "${layers[@]}"; do entries=$((entries + $(tar -tzf "$l" | wc -l))); done
echo "nginx fixture: ${#layers[@]} layers, $entries entries, $(du -cb "${layers[@]}" | tail -1 | cut -f1) compressed bytes"

unmount_all="for m in $work/r/snapshots/active/*/merged $work/r/snapshots/layers/*/fs; do umount \$m 2>/dev/null || true; done; rm -rf $work/r; sync"
tar_cmd="mkdir $work/t"
for l in "${layers[@]}"; do tar_cmd+=" && tar --numeric-owner -xzpf $l -C $work/t"; done

hyperfine --runs "$runs" --warmup 1 --export-json "$work/unpack.json" \
  --prepare "$unmount_all" -n "imgctl unpack+mount" "$bin --root $work/r mount --no-dedup oci:$nginx:latest" \
  --prepare "$unmount_all" -n "imgctl unpack+mount (dedup)" "$bin --root $work/r mount oci:$nginx:latest" \
  --prepare "$unmount_all" -n "imgctl unpack+mount (erofs)" "$bin --root $work/r mount --erofs oci:$nginx:latest" \
  --prepare "rm -rf $work/u; sync" -n "umoci unpack" "umoci unpack --image $nginx:latest $work/u" \
  --prepare "rm -rf $work/t; sync" -n "tar -xzf layers" "$tar_cmd"
eval "$unmount_all"

python3 - "$work/unpack.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
me = r["imgctl unpack+mount"]["median"]
for name, x in r.items():
    print(f"  {name:30s} median {x['median']:.3f}s  (min {x['min']:.3f}s, max {x['max']:.3f}s)")
print(f"  imgctl / umoci unpack = {me / r['umoci unpack']['median']:.2f}x  (target <= 0.7x)")
print(f"  imgctl / tar -xzf     = {me / r['tar -xzf layers']['median']:.2f}x  (target <= 1.2x)")
print(f"  dedup costs           = {r['imgctl unpack+mount (dedup)']['median'] / me:.2f}x of plain unpack")
er = r["imgctl unpack+mount (erofs)"]["median"]
print(f"  erofs / umoci unpack  = {er / r['umoci unpack']['median']:.2f}x")
print(f"  erofs / tar -xzf      = {er / r['tar -xzf layers']['median']:.2f}x")
PY

# Dedup: a second image with the same files in one different layer.
mkdir "$work/flat"
"$bin" --root "$work/x" export "oci:$nginx:latest" -o "$work/rootfs.tar"
tar --numeric-owner -xpf "$work/rootfs.tar" -C "$work/flat"
python3 scripts/fixtures/mkimage.py --base "$work/flat" --out "$work/flat-oci" >/dev/null
m1=$("$bin" --root "$work/d" mount oci:"$nginx":latest)
m2=$("$bin" --root "$work/d" mount oci:"$work/flat-oci")
layers_dir="$work/d/snapshots/layers"
logical=0
for l in "$layers_dir"/*/; do logical=$((logical + $(du -sb "$l" | cut -f1))); done
ondisk=$(du -sb "$layers_dir" | cut -f1)
echo "dedup: nginx (2 layers) + the same rootfs as 1 layer: $(ls "$layers_dir" | wc -l) layer dirs"
echo "  logical bytes $logical, on disk $ondisk, saved $((logical - ondisk)) ($(( (logical - ondisk) * 100 / logical ))%)"
umount "$m1" "$m2"
