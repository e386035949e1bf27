#!/usr/bin/env bash
# The main job end to end on a fresh Debian 12 machine: install deps, build imgctl, start a
# local registry with the nginx fixture, pull it into a fresh store, list and inspect it,
# and run a command from it in the sandbox; then build a small multi-stage image on the
# busybox fixture and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/imgctl
oci=$(./scripts/fixtures/nginx.sh)
busybox=$(./scripts/fixtures/busybox.sh)
work=$(mktemp -d /tmp/imgctl-demo.XXXXXX)
trap './scripts/registry.sh stop "$work/registry"; umount -R "$work/root"/mnt/* 2>/dev/null || true' EXIT
reg=$(./scripts/registry.sh start "$work/registry")
echo "== registry at $reg; pushing the nginx fixture with skopeo"
skopeo copy --quiet --dest-tls-verify=false "oci:$oci:latest" "docker://$reg/library/nginx:latest"
export IMGCTL_ROOT=$work/root
echo "== imgctl pull $reg/library/nginx:latest"
"$bin" pull "$reg/library/nginx:latest"
echo "== imgctl images"
"$bin" images
echo "== imgctl inspect (RootFS)"
"$bin" inspect "$reg/library/nginx:latest" | jq '.[0].RootFS'
echo "== skopeo reads imgctl's store"
skopeo inspect "oci:$IMGCTL_ROOT:$reg/library/nginx:latest" | jq '{Digest, Layers}'
echo "== imgctl run --rm (namespaces, cgroups, seccomp) nginx -v"
"$bin" run --rm "$reg/library/nginx:latest" nginx -v
echo "== imgctl build: a two-stage Buildfile on busybox, then run the image"
skopeo copy --quiet --dest-tls-verify=false "oci:$busybox:latest" "docker://$reg/library/busybox:latest"
"$bin" pull --quiet "$reg/library/busybox:latest"
mkdir -p "$work/app"
echo "hello from the build context" >"$work/app/greeting.txt"
cat >"$work/app/Buildfile" <<'BF'
ARG BASE
FROM ${BASE} AS builder
RUN echo "built in a sandboxed RUN step on $(uname -s)" > /msg
FROM ${BASE}
COPY --from=builder /msg /app/msg
COPY greeting.txt /app/
CMD ["cat", "/app/msg", "/app/greeting.txt"]
BF
"$bin" build --progress plain --build-arg "BASE=$reg/library/busybox:latest" -t demo-app:1 "$work/app"
"$bin" run --rm demo-app:1
echo "== rebuild: every step cached"
"$bin" build --progress plain --build-arg "BASE=$reg/library/busybox:latest" -t demo-app:1 "$work/app" 2>&1 | grep -c CACHED
echo "demo: OK (store at $IMGCTL_ROOT)"
