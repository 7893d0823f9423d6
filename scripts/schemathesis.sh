#!/usr/bin/env bash
# Fuzzes a live server with schemathesis against openapi.yaml: every response must have a
# documented status, body and headers, and none may be a server error. Installs schemathesis
# (pinned) into target/schemathesis-venv.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=target/schemathesis-venv
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

# shellcheck disable=SC2016 # expanded by the inner shell, once TASKHUB_URL is set
scripts/with-server.sh bash -c '"$0" --config-file .ci/schemathesis.toml run openapi.yaml \
    --url "$TASKHUB_URL" --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" --no-color \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance' \
    "$VENV/bin/schemathesis"
