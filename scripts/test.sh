#!/usr/bin/env bash
# The whole test suite, as README gives it: starts what the tests need, runs every test, stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --all-targets "$@"
