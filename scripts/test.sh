#!/usr/bin/env bash
# The whole test suite, as README gives it: starts what the tests need, runs every test, stops it.
#   1. cargo's tests (unit, integration: real server over HTTP, real CLI binary, real SQLite files,
#      the Azure Storage backend on the Azurite emulator, pinned in package.json)
#   2. the Durable Task Python SDK (PyPI `durabletask`, pinned) as worker and client against real
#      servers the tests start, on SQLite and on Azurite (compat/sdk-python)
#   3. the Durable Task JavaScript SDK (npm `@microsoft/durabletask-js`, pinned), likewise
#      (compat/sdk-js)
#   4. the unmodified npm `durable-functions` client against a live server
#   5. schemathesis against the live server, checked with openapi.yaml
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x node_modules/.bin/azurite ] || npm ci --no-audit --no-fund
./scripts/azurite.sh start
trap './scripts/azurite.sh stop' EXIT

cargo test --all-targets "$@"
scripts/sdk-python.sh
scripts/sdk-js.sh
scripts/compat-npm.sh
scripts/schemathesis.sh
