#!/usr/bin/env bash
# Status GET of one completed instance, measured with wrk (a load generator that is not the thing
# measured), against a `taskhub serve` on file SQLite with its default logging (RUST_LOG=info):
#   bench/status-wrk.sh BINARY PORT
# Compare two binaries by running them alternately in one sitting (the machine is noisy).
set -u
BIN=$1; PORT=$2
D=$(mktemp -d)
cd $D
AzureWebJobsStorage=sqlite:$D/t.db RUST_LOG=info $BIN serve --listen 127.0.0.1:$PORT --grpc-listen off > $D/log 2>&1 &
S=$!
for i in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:$PORT/healthz && break; curl -s -o /dev/null http://127.0.0.1:$PORT/runtime/webhooks/durabletask/instances && break; sleep 0.1; done
curl -s -X POST "http://127.0.0.1:$PORT/api/orchestrators/HelloSequence/bench1/wait?timeout=10" > /dev/null
wrk -t2 -c64 -d8s --latency "http://127.0.0.1:$PORT/runtime/webhooks/durabletask/instances/bench1" 2>&1 | grep -E "Requests/sec|  99%|  50%"
kill $S; wait $S 2>/dev/null; rm -rf $D
