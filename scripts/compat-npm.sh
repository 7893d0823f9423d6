#!/usr/bin/env bash
# The unmodified npm `durable-functions` client against a live server (compat/npm/test.mjs),
# installed from its pinned lockfile.
set -euo pipefail
cd "$(dirname "$0")/.."

(cd compat/npm && npm ci --no-audit --no-fund --silent)
scripts/with-server.sh node --test compat/npm/test.mjs
