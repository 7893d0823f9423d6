"""The same instances through every surface: started by the SDK and managed over the HTTP API
and the `taskhub` command line, or started over HTTP and run by the SDK worker."""

import json
import pathlib
import tempfile
import time
import urllib.parse

import pytest
from durabletask import client, worker

import orchestrations as o
from conftest import Server, new_id, output

S = client.OrchestrationStatus
MGMT = "/runtime/webhooks/durabletask"


def test_an_sdk_instance_is_read_listed_and_raised_over_http(hub):
    server = hub.server
    id = hub.client.schedule_new_orchestration(o.approval, input=60, instance_id=new_id("http"))
    hub.until(lambda: server.http_call("GET", f"{MGMT}/instances/{id}")[2],
              lambda b: b and b.get("customStatus") == "waiting")
    prefix = id.split("-")[0] + "-"
    code, headers, listed = server.http_call(
        "GET", f"{MGMT}/instances?instanceIdPrefix={urllib.parse.quote(id)}&runtimeStatus=Running")
    assert code == 200
    assert [i["instanceId"] for i in listed] == [id], (prefix, listed)
    code, _, _ = server.http_call("POST", f"{MGMT}/instances/{id}/raiseEvent/Approval", {"by": "curl"})
    assert code == 202
    state = hub.client.wait_for_orchestration_completion(id, timeout=30)
    assert output(state) == {"by": "curl"}
    code, _, body = server.http_call("GET", f"{MGMT}/instances/{id}?showHistory=true")
    assert code == 200 and body["runtimeStatus"] == "Completed" and body["output"] == {"by": "curl"}
    assert any(e["EventType"] == "EventRaised" for e in body["historyEvents"])


def test_an_sdk_instance_is_terminated_and_purged_over_http(hub):
    server = hub.server
    id = hub.client.schedule_new_orchestration(o.waits_forever)
    hub.client.wait_for_orchestration_start(id, timeout=30)
    code, _, _ = server.http_call("POST", f"{MGMT}/instances/{id}/terminate?reason=from%20curl")
    assert code == 202
    state = hub.client.wait_for_orchestration_completion(id, timeout=30)
    assert state.runtime_status == S.TERMINATED
    code, _, body = server.http_call("DELETE", f"{MGMT}/instances/{id}")
    assert code == 200 and body == {"instancesDeleted": 1}
    assert hub.client.get_orchestration_state(id) is None


def test_the_command_line_manages_sdk_instances(hub):
    server = hub.server
    id = hub.client.schedule_new_orchestration(o.approval, input=60, instance_id=new_id("cli"))
    hub.client.wait_for_orchestration_start(id, timeout=30)
    shown = server.cli("get-runtime-status", "--id", id, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["name"] == "approval"
    listed = server.cli("get-instances", "--runtime-status", "running", "--top", "1000")
    assert listed.returncode == 0 and id in listed.stdout, listed.stderr
    raised = server.cli("raise-event", "--id", id, "--event-name", "Approval",
                        "--event-data", '{"by":"cli"}')
    assert raised.returncode == 0, raised.stderr
    assert output(hub.client.wait_for_orchestration_completion(id, timeout=30)) == {"by": "cli"}

    waiting = hub.client.schedule_new_orchestration(o.waits_forever)
    hub.client.wait_for_orchestration_start(waiting, timeout=30)
    stopped = server.cli("terminate", "--id", waiting, "--reason", "from the cli")
    assert stopped.returncode == 0, stopped.stderr
    state = hub.client.wait_for_orchestration_completion(waiting, timeout=30)
    assert state.runtime_status == S.TERMINATED
    history = server.cli("get-history", "--id", waiting)
    assert history.returncode == 0 and "ExecutionTerminated" in history.stdout, history.stdout


def test_an_http_start_of_a_name_only_the_worker_has_runs_on_that_worker(hub):
    server = hub.server
    code, headers, body = server.http_call("POST", f"{MGMT}/orchestrators/hello_sequence")
    assert code == 202, body
    location = headers["Location"]
    deadline = time.time() + 30
    while True:
        path = location.removeprefix(server.http)
        code, _, status = server.http_call("GET", path)
        if code == 200:
            break
        assert code == 202 and time.time() < deadline, (code, status)
        time.sleep(0.2)
    assert status["runtimeStatus"] == "Completed"
    assert status["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    code, _, waited = server.http_call("POST", "/api/orchestrators/fan_out_fan_in/wait?timeout=30", 4)
    assert code == 200 and waited == 12


@pytest.fixture
def filtered(backend):
    """A server whose only worker announces work item filters: it serves `echo` and
    `hello_sequence` (with `say_hello`), nothing else."""
    server = Server(backend, pathlib.Path(tempfile.mkdtemp(prefix="taskhub-filtered-")))
    w = worker.TaskHubGrpcWorker(host_address=server.grpc)
    w.add_orchestrator(o.echo)
    w.add_orchestrator(o.hello_sequence)
    w.add_activity(o.say_hello)
    w.use_work_item_filters()
    w.start()
    yield server
    w.stop()
    server.stop()


def test_http_starts_are_checked_against_the_names_connected_workers_serve(filtered):
    deadline = time.time() + 30
    while True:  # the worker connects in the background
        code, _, body = filtered.http_call("POST", f"{MGMT}/orchestrators/echo", "hi")
        if code == 202 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert code == 202, body
    code, _, body = filtered.http_call("POST", f"{MGMT}/orchestrators/nobody_serves_this", "hi")
    assert code == 400, body
    assert "nobody_serves_this" in json.dumps(body)
    # The SDK client may start any name: its worker may connect later.
    c = client.TaskHubGrpcClient(host_address=filtered.grpc)
    later = c.schedule_new_orchestration("nobody_serves_this")
    time.sleep(1)
    assert c.get_orchestration_state(later).runtime_status == S.PENDING
    done = c.wait_for_orchestration_completion(c.schedule_new_orchestration(o.hello_sequence), timeout=30)
    assert done.runtime_status == S.COMPLETED


def test_work_waits_for_a_worker_that_serves_it(filtered):
    c = client.TaskHubGrpcClient(host_address=filtered.grpc)
    id = c.schedule_new_orchestration(o.fan_out_fan_in, input=3)
    time.sleep(1)
    assert c.get_orchestration_state(id).runtime_status == S.PENDING
    w = worker.TaskHubGrpcWorker(host_address=filtered.grpc)
    w.add_orchestrator(o.fan_out_fan_in)
    w.add_activity(o.double)
    w.use_work_item_filters()
    w.start()
    try:
        state = c.wait_for_orchestration_completion(id, timeout=30)
        assert output(state) == 6
    finally:
        w.stop()
