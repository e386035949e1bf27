#!/usr/bin/env bash
# The main job end to end on a fresh Debian 12 machine: install deps, build imgctl, start a
# local registry with the nginx fixture, pull it into a fresh store, list and inspect it,
# and run a command from it in the sandbox.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release --quiet
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/imgctl
oci=$(./scripts/fixtures/nginx.sh)
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
echo "demo: OK (store at $IMGCTL_ROOT)"
