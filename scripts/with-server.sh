#!/usr/bin/env bash
# Runs a command against a live `taskhub serve`: builds the binary, starts it on a free loopback
# port over a throwaway SQLite file, exports TASKHUB_URL (its origin), runs the command, stops
# the server with SIGTERM. Fails if the server logged an error or a panic.
#   scripts/with-server.sh node --test compat/npm/test.mjs
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin taskhub
DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AzureWebJobsStorage="sqlite:$DATA/taskhub.db" RUST_LOG=warn \
    target/debug/taskhub serve --listen "127.0.0.1:$PORT" --grpc-listen off >"$DATA/server.log" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT

export TASKHUB_URL="http://127.0.0.1:$PORT"
for _ in $(seq 100); do
    curl -s -o /dev/null "$TASKHUB_URL/runtime/webhooks/durabletask/instances" && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$DATA/server.log" >&2; exit 1; }
    sleep 0.1
done

"$@"
if grep -qE "request failed|panicked" "$DATA/server.log"; then
    echo "the server logged an error:" >&2
    cat "$DATA/server.log" >&2
    exit 1
fi
