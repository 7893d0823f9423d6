#!/usr/bin/env bash
# The whole test suite, as README gives it: starts what the tests need, runs every test, stops it.
# The Azure Storage backend's tests need the Azurite emulator (from npm, pinned in package.json).
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x node_modules/.bin/azurite ] || npm ci --no-audit --no-fund
./scripts/azurite.sh start
trap './scripts/azurite.sh stop' EXIT

cargo test --all-targets "$@"
