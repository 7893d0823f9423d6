#!/usr/bin/env bash
# The whole test suite, as README gives it: starts what the tests need, runs every test, stops it.
#   1. cargo's tests (unit, integration: real server over HTTP, real CLI binary, real SQLite files)
#   2. the unmodified npm `durable-functions` client against a live server
#   3. schemathesis against the live server, checked with openapi.yaml
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --all-targets "$@"
scripts/compat-npm.sh
scripts/schemathesis.sh
