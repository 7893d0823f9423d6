#!/usr/bin/env bash
# Starts or stops the Azurite storage emulator the Azure Storage backend's tests use.
#   scripts/azurite.sh start   # npm ci if needed, start on 127.0.0.1:10000-10002, wait until ready
#   scripts/azurite.sh stop    # stop the instance this script started (by its pid file)
# In-memory persistence: every start is a clean account.
set -euo pipefail
cd "$(dirname "$0")/.."

PID_FILE="${AZURITE_PID_FILE:-target/azurite.pid}"
LOG_FILE="${AZURITE_LOG_FILE:-target/azurite.log}"

ready() {
  # Each service answers plain TCP once it listens; three ports, three services.
  for port in 10000 10001 10002; do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || return 1
  done
}

case "${1:-}" in
  start)
    if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
      echo "azurite already running (pid $(cat "$PID_FILE"))"
      exit 0
    fi
    if ready; then
      echo "something already listens on 127.0.0.1:10000-10002; using it" >&2
      exit 0
    fi
    [ -x node_modules/.bin/azurite ] || npm ci --no-audit --no-fund >&2
    mkdir -p "$(dirname "$PID_FILE")"
    node_modules/.bin/azurite --silent --disableTelemetry --skipApiVersionCheck --inMemoryPersistence \
      --blobHost 127.0.0.1 --blobPort 10000 \
      --queueHost 127.0.0.1 --queuePort 10001 \
      --tableHost 127.0.0.1 --tablePort 10002 \
      >"$LOG_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 100); do
      if ready; then
        echo "azurite started (pid $(cat "$PID_FILE"))"
        exit 0
      fi
      if ! kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
        echo "azurite exited during startup; log:" >&2
        cat "$LOG_FILE" >&2
        rm -f "$PID_FILE"
        exit 1
      fi
      sleep 0.1
    done
    echo "azurite did not become ready in 10s; log:" >&2
    cat "$LOG_FILE" >&2
    exit 1
    ;;
  stop)
    if [ -f "$PID_FILE" ]; then
      pid="$(cat "$PID_FILE")"
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$PID_FILE"
      echo "azurite stopped"
    fi
    ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
