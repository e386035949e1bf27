#!/usr/bin/env bash
# Start Debian's docker-registry (CNCF distribution) on 127.0.0.1 with a free port and a
# fresh storage dir.   Usage: scripts/registry.sh start DIR   -> prints 127.0.0.1:PORT
#                             scripts/registry.sh stop DIR
set -euo pipefail
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
case "$cmd" in
start)
  mkdir -p "$dir/storage"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat >"$dir/config.yml" <<YAML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
  docker-registry serve "$dir/config.yml" >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
      echo "127.0.0.1:$port"; exit 0
    fi
    sleep 0.1
  done
  echo "registry.sh: docker-registry did not start; see $dir/registry.log" >&2; exit 1 ;;
stop)
  [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
