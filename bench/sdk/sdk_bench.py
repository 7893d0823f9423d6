"""HelloCities5 (five sequential activities) through the Durable Task Python SDK's worker, against
a backend in a process of its own: taskhub (`target/release/taskhub serve`, file SQLite, durable
commits) or the SDK's own in-memory test backend (`durabletask.testing`). Prints throughput,
latency and each process's CPU time.

    python bench/sdk/sdk_bench.py --backend taskhub --instances 2000
    python bench/sdk/sdk_bench.py --backend in-memory --instances 2000

The client and the worker are the same code for both backends; only the backend differs. Run both
in one sitting and compare the ratio: the machine is shared and noisy. `BENCH_WORKER_WRAPPER=x.py`
starts the worker as `python x.py worker.py ADDR` (a wrapper that times its gRPC calls or profiles
it), and shows the worker's stderr.
"""

import argparse
import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import time

from durabletask import client

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")
EXPECTED = ["Hello Tokyo!", "Hello Seattle!", "Hello London!", "Hello Cairo!", "Hello Lima!"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def wait_port(port, proc, what):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


def start_backend(kind, port, workdir):
    if kind == "taskhub":
        binary = ROOT / "target" / "release" / "taskhub"
        if not binary.exists():
            sys.exit(f"{binary} is missing: cargo build --release")
        env = {**os.environ, "AzureWebJobsStorage": f"sqlite:{workdir}/bench.db",
               "RUST_LOG": "warn"}
        return subprocess.Popen([str(binary), "serve", "--listen", f"127.0.0.1:{free_port()}",
                                 "--grpc-listen", f"127.0.0.1:{port}"], env=env, cwd=workdir,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    code = ("import logging, time; logging.disable(logging.CRITICAL);"
            "from durabletask.testing import create_test_backend;"
            f"b = create_test_backend(port={port});"
            "time.sleep(10**9)")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def percentile(sorted_values, p):
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backend", choices=["taskhub", "in-memory"], required=True)
    ap.add_argument("--instances", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=None,
                    help="the worker's thread pool size (default: the SDK's own)")
    args = ap.parse_args()

    import logging
    logging.disable(logging.CRITICAL)
    workdir = tempfile.mkdtemp(prefix="sdk-bench-")
    port = free_port()
    backend = start_backend(args.backend, port, workdir)
    worker = None
    try:
        wait_port(port, backend, args.backend)
        worker = subprocess.Popen([sys.executable, *os.environ.get("BENCH_WORKER_WRAPPER", "").split(), str(HERE / "worker.py"), f"127.0.0.1:{port}",
                                   *([str(args.threads)] if args.threads else [])],
                                  stdout=subprocess.PIPE, stderr=None if os.environ.get("BENCH_WORKER_WRAPPER") else subprocess.DEVNULL)
        assert worker.stdout.readline().startswith(b"ready")
        c = client.TaskHubGrpcClient(host_address=f"127.0.0.1:{port}")
        cpu_backend, cpu_worker = cpu_seconds(backend.pid), cpu_seconds(worker.pid)
        began = time.time()
        ids = [c.schedule_new_orchestration("hello_cities5", instance_id=f"bench-{i:05}")
               for i in range(args.instances)]
        started = time.time()
        latencies = []
        for i in ids:
            state = c.wait_for_orchestration_completion(i, timeout=600)
            assert state.runtime_status == client.OrchestrationStatus.COMPLETED, (i, state)
            assert state.serialized_output and "Hello Lima!" in state.serialized_output, state
            latencies.append((state.last_updated_at - state.created_at).total_seconds())
        elapsed = time.time() - began
        cpu_backend = cpu_seconds(backend.pid) - cpu_backend
        cpu_worker = cpu_seconds(worker.pid) - cpu_worker
    finally:
        for p in (worker, backend):
            if p is not None:
                p.kill()
                p.wait()
    latencies.sort()
    work_items = args.instances * (6 + 5)  # six orchestrator episodes and five activities each
    print(f"backend={args.backend} instances={args.instances} worker threads={args.threads or 'SDK default'}")
    print(f"  starts: {args.instances / (started - began):.0f}/s")
    print(f"  throughput: {args.instances / elapsed:.1f} orch/s ({elapsed:.1f} s, first start to last completion)")
    print(f"  latency (created -> completed): p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
          f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms")
    print(f"  backend CPU: {cpu_backend:.2f} s = {cpu_backend / work_items * 1000:.3f} ms per work item "
          f"({work_items} work items)")
    print(f"  worker CPU: {cpu_worker:.2f} s")


if __name__ == "__main__":
    main()
