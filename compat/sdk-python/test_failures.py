"""Crashes and bad input: a killed server, a killed worker, malformed requests, and a worker whose
answer contradicts the history. Nothing panics, nothing is stuck, every error says what was wrong."""

import pathlib
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import pytest
from durabletask import client, worker
from durabletask.internal import orchestrator_service_pb2 as pb
from google.protobuf import empty_pb2, wrappers_pb2

import orchestrations as o
from conftest import Server, new_id, output, stub_for

S = client.OrchestrationStatus
HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture
def lone(backend):
    """A server of its own with no worker connected."""
    server = Server(backend, pathlib.Path(tempfile.mkdtemp(prefix="taskhub-lone-")))
    yield server
    server.stop()


def code_of(call, *args):
    with pytest.raises(grpc.RpcError) as e:
        call(*args)
    return e.value.code(), e.value.details()


def test_malformed_requests_get_grpc_errors_that_say_what_was_wrong(lone):
    stub = stub_for(lone)
    stub.Hello(empty_pb2.Empty())
    code, why = code_of(stub.StartInstance, pb.CreateInstanceRequest(name="echo", instanceId="a/b"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "instanceId" in why
    code, why = code_of(stub.StartInstance, pb.CreateInstanceRequest(name="echo", instanceId=".."))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "'..'" in why
    code, why = code_of(stub.StartInstance, pb.CreateInstanceRequest(name=""))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "name" in why
    stub.StartInstance(pb.CreateInstanceRequest(name="echo", instanceId="twice"))
    code, why = code_of(stub.StartInstance, pb.CreateInstanceRequest(name="echo", instanceId="twice"))
    assert code == grpc.StatusCode.ALREADY_EXISTS and "twice" in why
    code, why = code_of(stub.RaiseEvent, pb.RaiseEventRequest(instanceId="nobody", name="E"))
    assert code == grpc.StatusCode.NOT_FOUND and "nobody" in why
    code, why = code_of(stub.CompleteOrchestratorTask,
                        pb.OrchestratorResponse(instanceId="twice", completionToken="made-up"))
    assert code == grpc.StatusCode.NOT_FOUND and "completion token" in why
    code, why = code_of(stub.CompleteActivityTask,
                        pb.ActivityResponse(instanceId="twice", taskId=0, completionToken="made-up"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, why = code_of(stub.PurgeInstances, pb.PurgeInstancesRequest())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, why = code_of(stub.SignalEntity, pb.SignalEntityRequest(instanceId="@counter@x", name="add"))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "entities" in why
    code, why = code_of(stub.QueryInstances, pb.QueryInstancesRequest(
        query=pb.InstanceQuery(runtimeStatus=[42])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "42" in why
    # None of it changed anything, and the server still answers.
    assert stub.GetInstance(pb.GetInstanceRequest(instanceId="nobody")).exists is False
    assert "panicked" not in lone.log_text()


def raw_work_items(server, names):
    """A hand-written worker: a GetWorkItems stream serving only `names`, read on a thread."""
    stub = stub_for(server)
    stream = stub.GetWorkItems(pb.GetWorkItemsRequest(
        maxConcurrentOrchestrationWorkItems=10, maxConcurrentActivityWorkItems=10,
        workItemFilters=pb.WorkItemFilters(
            orchestrations=[pb.OrchestrationFilter(name=n) for n in names])))
    items = []

    def read():
        try:
            for item in stream:
                if item.HasField("orchestratorRequest") or item.HasField("activityRequest"):
                    items.append(item)
        except grpc.RpcError:
            pass

    threading.Thread(target=read, daemon=True).start()
    return stub, stream, items


def next_item(items, timeout=30):
    deadline = time.time() + timeout
    while not items:
        assert time.time() < deadline, "no work item arrived"
        time.sleep(0.05)
    return items.pop(0)


def test_an_answer_that_contradicts_the_history_fails_the_instance_with_the_reason(lone):
    stub, stream, items = raw_work_items(lone, ["Raw"])
    c = client.TaskHubGrpcClient(host_address=lone.grpc)
    id = c.schedule_new_orchestration("Raw")
    item = next_item(items)
    assert item.orchestratorRequest.instanceId == id
    kinds = [e.WhichOneof("eventType") for e in item.orchestratorRequest.newEvents]
    assert kinds == ["orchestratorStarted", "executionStarted"]
    twice = [pb.OrchestratorAction(id=1, scheduleTask=pb.ScheduleTaskAction(name="a")),
             pb.OrchestratorAction(id=1, scheduleTask=pb.ScheduleTaskAction(name="b"))]
    stub.CompleteOrchestratorTask(pb.OrchestratorResponse(
        instanceId=id, actions=twice, completionToken=item.completionToken))
    state = c.wait_for_orchestration_completion(id, timeout=30)
    assert state.runtime_status == S.FAILED
    assert "action id 1" in state.failure_details.message
    # The same token cannot be used twice.
    code, _ = code_of(stub.CompleteOrchestratorTask, pb.OrchestratorResponse(
        instanceId=id, completionToken=item.completionToken))
    assert code == grpc.StatusCode.NOT_FOUND
    stream.cancel()


def test_an_entity_action_fails_the_instance_instead_of_retrying_forever(lone):
    stub, stream, items = raw_work_items(lone, ["Raw"])
    c = client.TaskHubGrpcClient(host_address=lone.grpc)
    id = c.schedule_new_orchestration("Raw")
    item = next_item(items)
    entity = pb.OrchestratorAction(id=0, sendEntityMessage=pb.SendEntityMessageAction(
        entityOperationSignaled=pb.EntityOperationSignaledEvent(requestId="r", operation="add")))
    stub.CompleteOrchestratorTask(pb.OrchestratorResponse(
        instanceId=id, actions=[entity], completionToken=item.completionToken))
    state = c.wait_for_orchestration_completion(id, timeout=30)
    assert state.runtime_status == S.FAILED
    assert "entities are not supported" in state.failure_details.message
    stream.cancel()


def test_an_abandoned_or_disconnected_work_item_is_handed_out_again(lone):
    stub, stream, items = raw_work_items(lone, ["Raw"])
    c = client.TaskHubGrpcClient(host_address=lone.grpc)
    id = c.schedule_new_orchestration("Raw")
    first = next_item(items)
    stub.AbandonTaskOrchestratorWorkItem(pb.AbandonOrchestrationTaskRequest(
        completionToken=first.completionToken))
    second = next_item(items)
    assert second.orchestratorRequest.instanceId == id
    assert second.completionToken != first.completionToken
    # The worker goes away holding it: a new worker gets it at once, not after the lock expires.
    stream.cancel()
    started = time.time()
    stub2, stream2, items2 = raw_work_items(lone, ["Raw"])
    third = next_item(items2, timeout=20)
    assert third.orchestratorRequest.instanceId == id
    assert time.time() - started < 20
    done = pb.OrchestratorAction(id=-1, completeOrchestration=pb.CompleteOrchestrationAction(
        orchestrationStatus=pb.ORCHESTRATION_STATUS_COMPLETED, result=wrappers_pb2.StringValue(value='"ok"')))
    stub2.CompleteOrchestratorTask(pb.OrchestratorResponse(
        instanceId=id, actions=[done], completionToken=third.completionToken))
    assert output(c.wait_for_orchestration_completion(id, timeout=30)) == "ok"
    stream2.cancel()


def test_a_worker_killed_mid_activity_hands_the_activity_to_the_next_worker(lone):
    c = client.TaskHubGrpcClient(host_address=lone.grpc)
    victim = subprocess.Popen([sys.executable, str(HERE / "worker_process.py"), lone.grpc],
                              cwd=HERE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert victim.stdout.readline().startswith(b"worker started")
        id = c.schedule_new_orchestration(o.slow_activity, input=3)
        c.wait_for_orchestration_start(id, timeout=30)
        time.sleep(1.5)  # the activity is running in the victim now
    finally:
        victim.kill()
        victim.wait()
    killed = time.time()
    w = o.register(worker.TaskHubGrpcWorker(host_address=lone.grpc))
    w.start()
    try:
        state = c.wait_for_orchestration_completion(id, timeout=45)
        assert state.runtime_status == S.COMPLETED and output(state) == 3
        # Redelivered when the stream ended, not when the 60 s lock ran out.
        assert time.time() - killed < 30
    finally:
        w.stop()


def retry_while_unavailable(call, timeout=30):
    """gRPC channels back off after their connection dies, failing calls fast meanwhile; an
    application retries, and so does this."""
    deadline = time.time() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.time() > deadline:
                raise
            time.sleep(0.2)


def test_kill_9_of_taskhub_while_a_worker_runs_200_orchestrations_loses_none(tmp_path):
    """SQLite: the server dies mid-run and comes back on the same ports; the SDK worker reconnects
    and every acknowledged instance completes with the right output."""
    server = Server("sqlite", tmp_path)
    w = o.register(worker.TaskHubGrpcWorker(host_address=server.grpc))
    w.start()
    c = client.TaskHubGrpcClient(host_address=server.grpc)
    try:
        ids = [c.schedule_new_orchestration(o.hello_cities5, instance_id=f"crash-{i:03}")
               for i in range(200)]
        deadline = time.time() + 60
        while sum(1 for i in ids[:50] if c.get_orchestration_state(i).runtime_status == S.COMPLETED) < 10:
            assert time.time() < deadline, "nothing completed before the kill"
            time.sleep(0.05)
        server.kill()
        server.start()
        expected = ["Hello Tokyo!", "Hello Seattle!", "Hello London!", "Hello Cairo!", "Hello Lima!"]
        for i in ids:
            state = retry_while_unavailable(lambda: c.wait_for_orchestration_completion(i, timeout=120))
            assert state.runtime_status == S.COMPLETED, (i, state)
            assert output(state) == expected, i
    finally:
        w.stop()
        server.stop()


def test_a_task_hub_is_deleted_and_created_again_over_grpc(lone):
    stub = stub_for(lone)
    c = client.TaskHubGrpcClient(host_address=lone.grpc)
    id = c.schedule_new_orchestration("nobody_runs_this")
    assert c.get_orchestration_state(id) is not None
    stub.DeleteTaskHub(pb.DeleteTaskHubRequest())
    stub.CreateTaskHub(pb.CreateTaskHubRequest(recreateIfExists=False))
    assert c.get_orchestration_state(id) is None
    again = c.schedule_new_orchestration("nobody_runs_this", instance_id=id)
    assert again == id
    stub.CreateTaskHub(pb.CreateTaskHubRequest(recreateIfExists=True))
    assert c.get_orchestration_state(id) is None


def test_waiting_for_an_instance_that_does_not_exist_answers_at_once(lone):
    c = client.TaskHubGrpcClient(host_address=lone.grpc)
    started = time.time()
    assert c.wait_for_orchestration_completion("nobody-here", timeout=20) is None
    assert c.wait_for_orchestration_start("nobody-here", timeout=20) is None
    assert time.time() - started < 5


def test_a_server_with_an_access_key_serves_only_calls_that_carry_it(backend, tmp_path):
    key = "sdk-test-key-0123456789"
    server = Server(backend, tmp_path, env={"TASKHUB_ACCESS_KEY": key})
    try:
        keyless = client.TaskHubGrpcClient(host_address=server.grpc)
        code, why = code_of(keyless.schedule_new_orchestration, "echo")
        assert code == grpc.StatusCode.UNAUTHENTICATED and "x-functions-key" in why
        assert key not in why
        metadata = [("x-functions-key", key)]
        w = o.register(worker.TaskHubGrpcWorker(host_address=server.grpc, metadata=metadata))
        w.start()
        try:
            c = client.TaskHubGrpcClient(host_address=server.grpc, metadata=metadata)
            state = c.wait_for_orchestration_completion(
                c.schedule_new_orchestration(o.echo, input="keyed"), timeout=30)
            assert output(state) == "keyed"
        finally:
            w.stop()
        assert key not in server.log_text(), "the key reached the log"
    finally:
        server.stop()
