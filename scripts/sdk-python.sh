#!/usr/bin/env bash
# The Durable Task Python SDK (PyPI `durabletask`, pinned) as worker and client against real
# `taskhub serve` processes that the tests start themselves (compat/sdk-python), on SQLite and on
# Azurite (start it first: scripts/test.sh does). Installs the SDK and pytest into
# target/sdk-python-venv. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=target/sdk-python-venv
REQUIREMENTS=compat/sdk-python/requirements.txt
if ! cmp -s "$REQUIREMENTS" "$VENV/requirements.txt" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$VENV/requirements.txt"
fi
cargo build --quiet --bin taskhub  # a no-op when it is fresh; never test a stale binary
cd compat/sdk-python
exec "../../$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
