#!/usr/bin/env bash
# The Durable Task JavaScript SDK (npm `@microsoft/durabletask-js`, pinned) as worker and client
# against real `taskhub serve` processes that the tests start themselves (compat/sdk-js), on SQLite
# and on Azurite (start it first: scripts/test.sh does). Installs the SDK from its pinned lockfile.
# Extra arguments go to `node --test` (e.g. --test-name-pattern=azure).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin taskhub  # a no-op when it is fresh; never test a stale binary
cd compat/sdk-js
npm ci --no-audit --no-fund --silent
exec node --test "$@" test.mjs
