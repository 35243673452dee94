#!/usr/bin/env bash
# `make cluster`: a local Redis and three streamsnap nodes (ports PORT, PORT+1, PORT+2); Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8080}
REDIS_PORT=${REDIS_PORT:-6390}
if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing Debian's redis-server"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
fi
# One secret for the three nodes, new each time unless given.
export STREAMSNAP_CLUSTER_SECRET=${STREAMSNAP_CLUSTER_SECRET:-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')}
pids=()
stop() { trap - INT TERM EXIT; kill "${pids[@]}" 2>/dev/null || true; wait || true; }
trap stop INT TERM EXIT
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --loglevel warning &
pids+=($!)
for i in 1 2 3; do
  "$BIN/streamsnap" serve --port $((PORT + i - 1)) --redis "redis://127.0.0.1:$REDIS_PORT/0" --node-id "node$i" &
  pids+=($!)
done
echo "cluster: redis on 127.0.0.1:$REDIS_PORT, nodes on ports $PORT, $((PORT + 1)), $((PORT + 2)); Ctrl-C stops them all"
# When one of them stops (a port in use, a crash), stop them all rather than run a partial cluster.
status=0
wait -n || status=$?
echo "cluster: a process stopped (status $status); stopping the others" >&2
exit "$status"
