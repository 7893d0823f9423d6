"""A real `taskhub serve` for the Durable Task Python SDK to talk to, on each store.

Every test gets a `hub`: a server started by this file (the binary cargo built, a fresh SQLite
file or a fresh task hub on Azurite), an SDK worker with `orchestrations.py` registered, and an
SDK client, all over the server's gRPC endpoint; plus helpers to reach the same instances through
the HTTP API and the `taskhub` command line. Nothing is skipped: a missing binary or emulator
fails with a message that says how to get it.
"""

import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid

import pytest
from durabletask import client, worker

import orchestrations

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("TASKHUB_BIN", ROOT / "target" / "debug" / "taskhub"))
AZURITE = "UseDevelopmentStorage=true"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def azurite_is_up() -> bool:
    for port in (10000, 10001, 10002):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
    return True


class Server:
    """One `taskhub serve` process. `restart()` and `kill()` act on the real process."""

    def __init__(self, backend: str, workdir: pathlib.Path, env: dict | None = None):
        if not BIN.exists():
            pytest.fail(f"{BIN} does not exist: build it with `cargo build` (or set TASKHUB_BIN)")
        if backend == "azure" and not azurite_is_up():
            pytest.fail("Azurite is not running on 127.0.0.1:10000-10002: start it with "
                        "`scripts/azurite.sh start` (scripts/test.sh does this)")
        self.backend = backend
        self.workdir = workdir
        self.hub = "sdk" + uuid.uuid4().hex[:16]
        connection = f"sqlite:{workdir / 'taskhub.db'}" if backend == "sqlite" else AZURITE
        self.env = {**os.environ, "AzureWebJobsStorage": connection, "TASKHUB_TASK_HUB": self.hub,
                    "RUST_LOG": os.environ.get("RUST_LOG", "info"), **(env or {})}
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.proc = None
        self.start()

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self):
        """Starts the server (again, after a kill) on the same ports and waits until it serves."""
        log_path = self.workdir / "server.log"
        before = len(log_path.read_text(errors="replace")) if log_path.exists() else 0
        self.log = open(log_path, "a")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--listen", f"127.0.0.1:{self.http_port}",
             "--grpc-listen", self.grpc],
            env=self.env, cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"taskhub serve exited: {self.log_text()}")
            if "serving the management API" in self.log_text()[before:]:
                return
            time.sleep(0.05)
        pytest.fail(f"taskhub serve did not start in 30 s: {self.log_text()}")

    def log_text(self) -> str:
        return (self.workdir / "server.log").read_text(errors="replace")

    def kill(self):
        """kill -9: no shutdown, no flush beyond what was committed."""
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    # ---- the same instances through the other surfaces ----

    def http_call(self, method: str, path: str, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.http + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                text = r.read().decode()
                return r.status, r.headers, (json.loads(text) if text else None)
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            return e.code, e.headers, (json.loads(text) if text else None)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN), *args, "--task-hub-name", self.hub],
                              env=self.env, cwd=self.workdir, capture_output=True, text=True,
                              timeout=60)


class Hub:
    """A server with an SDK worker and client connected to it."""

    def __init__(self, server: Server):
        self.server = server
        self.worker = orchestrations.register(worker.TaskHubGrpcWorker(host_address=server.grpc))
        self.worker.start()
        self.client = client.TaskHubGrpcClient(host_address=server.grpc)
        # The worker connects in the background: one instance run through it proves it is there.
        self.run(orchestrations.echo, input="ready")

    def run(self, orchestrator, input=None, timeout=60, **kwargs):
        """Starts an instance and waits for it to finish; returns its final state."""
        id = self.client.schedule_new_orchestration(orchestrator, input=input, **kwargs)
        state = self.client.wait_for_orchestration_completion(id, timeout=timeout)
        assert state is not None, f"instance {id} vanished"
        return state

    def until(self, what, predicate, timeout=30.0):
        """Polls `what()` until `predicate(value)` holds; fails with the last value otherwise."""
        deadline = time.time() + timeout
        while True:
            value = what()
            if predicate(value):
                return value
            if time.time() >= deadline:
                pytest.fail(f"gave up after {timeout} s; last value: {value!r}")
            time.sleep(0.1)

    def stop(self):
        self.worker.stop()


@pytest.fixture(scope="session", params=["sqlite", "azure"])
def backend(request):
    return request.param


@pytest.fixture(scope="session")
def server(backend):
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=f"taskhub-sdk-{backend}-"))
    s = Server(backend, workdir)
    yield s
    s.stop()
    if os.environ.get("KEEP_SDK_TEST_DATA") is None:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def hub(server):
    h = Hub(server)
    yield h
    h.stop()


@pytest.fixture
def tmp_marker(tmp_path):
    return str(tmp_path / "marker")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} did not hold within {timeout} s")


def output(state):
    return json.loads(state.serialized_output) if state.serialized_output else None


def stub_for(server: Server):
    """The raw generated gRPC stub, for requests the SDK's client never makes."""
    import grpc
    from durabletask.internal import orchestrator_service_pb2_grpc as stubs

    channel = grpc.insecure_channel(server.grpc)
    return stubs.TaskHubSidecarServiceStub(channel)


__all__ = ["new_id", "output", "wait_for", "stub_for", "Server", "Hub", "free_port"]
