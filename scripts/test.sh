#!/usr/bin/env bash
# Run imgctl's whole test suite: install deps, build fixtures, lint, unit + integration
# tests (as root they exercise the real registry, overlayfs, namespaces and cgroups),
# and the parser fuzz run. Usage: ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/fixtures/nginx.sh >/dev/null
./scripts/fixtures/busybox.sh >/dev/null
export IMGCTL_TESTDATA=${IMGCTL_TESTDATA:-/var/cache/imgctl-testdata}
echo "== fmt and clippy"
cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
echo "== tests"
cargo test --lib --bins --tests --no-fail-fast -- --test-threads=2
echo "== benches (each run once, as a test)"
cargo test --benches --no-fail-fast
echo "== buildfile fuzz (${IMGCTL_FUZZ_SECONDS:-60}s over arbitrary bytes)"
IMGCTL_FUZZ_SECONDS=${IMGCTL_FUZZ_SECONDS:-60} cargo test --lib buildfile::fuzz -- --ignored --nocapture
