#!/usr/bin/env bash
# Fuzzes the live server with schemathesis against openapi.yaml: every response must be a
# documented status with a documented body and headers, and none may be a server error.
# Installs schemathesis (pinned) into target/schemathesis-venv, starts `taskhub serve` on a free
# loopback port over a throwaway SQLite file, and stops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=target/schemathesis-venv
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin taskhub
DATA=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
AzureWebJobsStorage="sqlite:$DATA/taskhub.db" RUST_LOG=warn \
    target/debug/taskhub serve --listen "127.0.0.1:$PORT" >"$DATA/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; rm -rf "$DATA"' EXIT

for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/runtime/webhooks/durabletask/instances" && break
    sleep 0.1
done

"$VENV/bin/schemathesis" --config-file .ci/schemathesis.toml run openapi.yaml \
    --url "http://127.0.0.1:$PORT" \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --no-color
if grep -qE "request failed|panicked" "$DATA/server.log"; then
    echo "the server logged an error:" >&2; cat "$DATA/server.log" >&2
    exit 1
fi
