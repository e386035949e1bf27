#!/usr/bin/env bash
# Install what imgctl's build, tests, demo and benchmarks need on Debian 12.
# Idempotent: skips apt when every package is already installed.
set -euo pipefail
pkgs=(
  apache2-utils
  bc
  buildah
  busybox-static
  crun
  debootstrap
  docker.io
  docker-registry
  gcc
  hyperfine
  iproute2
  jq
  libc6-dev
  libseccomp-dev
  nftables
  openssl
  pkg-config
  podman
  python3
  runc
  skopeo
  time
  umoci
  zstd
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Do not start installed daemons (docker.io's dockerd): benchmarks run their own.
  export RUNLEVEL=1
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "install-deps: cargo not found; install a stable Rust toolchain (rustup) first" >&2; exit 1; }
