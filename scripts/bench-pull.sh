#!/usr/bin/env bash
# Pull benchmark: `imgctl pull` vs `skopeo copy docker://... oci:...` of the nginx fixture
# from the same local registry in the same run (alternating runs, fresh destination each
# time, medians; the imgctl/skopeo wall-time ratio is printed last), plus the peak RSS of
# `imgctl pull` for an image with one 500 MiB layer (GNU time -v).
#
# Both sides store compressed blobs without unpacking: imgctl runs with --no-unpack, and
# skopeo's oci: destination keeps layers as they are.
#   Usage: scripts/bench-pull.sh [RUNS]     (default 5; needs root for /var/cache)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
./scripts/install-deps.sh
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/imgctl
nginx=$(./scripts/fixtures/nginx.sh)
cache=${IMGCTL_TESTDATA:-/var/cache/imgctl-testdata}
work=$(mktemp -d /tmp/imgctl-bench.XXXXXX)
trap './scripts/registry.sh stop "$work/registry"; rm -rf "$work"' EXIT
reg=$(./scripts/registry.sh start "$work/registry")
skopeo copy --quiet --dest-tls-verify=false "oci:$nginx:latest" "docker://$reg/library/nginx:latest"

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

: >"$work/imgctl.times"; : >"$work/skopeo.times"
for i in $(seq "$runs"); do
  for tool in imgctl skopeo; do
    dest="$work/dest-$tool-$i"
    t0=$(now)
    if [ "$tool" = imgctl ]; then
      IMGCTL_ROOT="$dest" "$bin" pull --quiet --no-unpack "$reg/library/nginx:latest" >/dev/null
    else
      skopeo copy --quiet --src-tls-verify=false "docker://$reg/library/nginx:latest" "oci:$dest:latest"
    fi
    t1=$(now)
    echo "$t1 - $t0" | bc -l >>"$work/$tool.times"
    rm -rf "$dest"
  done
done
mi=$(median <"$work/imgctl.times"); ms=$(median <"$work/skopeo.times")

# A 500 MiB single-layer image (incompressible content), cached.
big=$cache/big500-oci
if [ ! -f "$big/index.json" ]; then
  echo "bench: building the 500 MiB layer fixture in $big" >&2
  tmp=$(mktemp -d "$cache/big500.XXXXXX")
  mkdir -p "$tmp/root" "$tmp/oci/blobs/sha256"
  head -c $((500 * 1024 * 1024)) /dev/urandom >"$tmp/root/big.bin"
  tar -C "$tmp/root" --sort=name --mtime=@0 --owner=0 --group=0 -cf "$tmp/layer.tar" big.bin
  diff_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  gzip -1 -n -c "$tmp/layer.tar" >"$tmp/layer.tar.gz"
  layer=$(sha256sum "$tmp/layer.tar.gz" | cut -d' ' -f1); lsize=$(stat -c %s "$tmp/layer.tar.gz")
  mv "$tmp/layer.tar.gz" "$tmp/oci/blobs/sha256/$layer"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$diff_id" >"$tmp/config.json"
  cfg=$(sha256sum "$tmp/config.json" | cut -d' ' -f1); csize=$(stat -c %s "$tmp/config.json")
  mv "$tmp/config.json" "$tmp/oci/blobs/sha256/$cfg"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$cfg" "$csize" "$layer" "$lsize" >"$tmp/manifest.json"
  man=$(sha256sum "$tmp/manifest.json" | cut -d' ' -f1); msize=$(stat -c %s "$tmp/manifest.json")
  mv "$tmp/manifest.json" "$tmp/oci/blobs/sha256/$man"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$man" "$msize" >"$tmp/oci/index.json"
  mv "$tmp/oci" "$big"; rm -rf "$tmp"
fi
skopeo copy --quiet --dest-tls-verify=false "oci:$big:latest" "docker://$reg/bench/big:latest"
rss() { awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$1"; }
IMGCTL_ROOT="$work/big-imgctl" /usr/bin/time -v -o "$work/imgctl.rss" \
  "$bin" pull --quiet --no-unpack "$reg/bench/big:latest" >/dev/null
/usr/bin/time -v -o "$work/skopeo.rss" \
  skopeo copy --quiet --src-tls-verify=false "docker://$reg/bench/big:latest" "oci:$work/big-skopeo:latest"
ri=$(rss "$work/imgctl.rss"); rs=$(rss "$work/skopeo.rss")

echo "nginx pull, $runs alternating runs each"
echo "  imgctl times (s): $(tr '\n' ' ' <"$work/imgctl.times")"
echo "  skopeo times (s): $(tr '\n' ' ' <"$work/skopeo.times")"
printf '  median wall time: imgctl %.3f s, skopeo %.3f s\n' "$mi" "$ms"
echo "500 MiB layer pull, peak RSS: imgctl $((ri / 1024)) MiB, skopeo $((rs / 1024)) MiB (target: imgctl < 64 MiB)"
printf 'ratio imgctl/skopeo (nginx pull wall time, target <= 1.0): %.2f\n' "$(echo "$mi / $ms" | bc -l)"
