"""Orchestrations written with the Durable Task Python SDK, run by an SDK worker against a real
`taskhub serve` (on SQLite and on Azurite), driven by the SDK's own client."""

import json
import os
import time
from datetime import datetime, timedelta, timezone

import pytest
from durabletask import client

import orchestrations as o
from conftest import new_id, output

S = client.OrchestrationStatus


def test_an_activity_sequence_completes_with_its_results(hub):
    state = hub.run(o.hello_sequence)
    assert state.runtime_status == S.COMPLETED
    assert output(state) == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]


def test_fan_out_fan_in_sums_parallel_activities(hub):
    state = hub.run(o.fan_out_fan_in, input=25)
    assert state.runtime_status == S.COMPLETED
    assert output(state) == sum(2 * i for i in range(25))


def test_sub_orchestrations_report_to_their_parent(hub):
    id = new_id("parent")
    state = hub.run(o.parent, input=4, instance_id=id)
    assert state.runtime_status == S.COMPLETED
    assert output(state) == {"greetings": ["Hello Tokyo!", "Hello Seattle!", "Hello London!"],
                             "sums": [12, 12]}
    child = hub.client.get_orchestration_state(f"{id}-child")
    assert child.runtime_status == S.COMPLETED
    # The child names its parent, over HTTP too.
    code, _, body = hub.server.http_call(
        "GET", f"/runtime/webhooks/durabletask/instances/{id}-child")
    assert code == 200, body


def test_a_durable_timer_fires_after_its_time(hub):
    started = time.time()
    state = hub.run(o.timer, input=1.5)
    assert state.runtime_status == S.COMPLETED
    assert output(state) >= 1.5
    assert time.time() - started >= 1.4


def test_an_external_event_wins_over_its_timeout(hub):
    id = hub.client.schedule_new_orchestration(o.approval, input=60)
    hub.client.wait_for_orchestration_start(id, timeout=30)
    hub.until(lambda: hub.client.get_orchestration_state(id).serialized_custom_status,
              lambda s: s == json.dumps("waiting"))
    hub.client.raise_orchestration_event(id, "Approval", data={"by": "Ada"})
    state = hub.client.wait_for_orchestration_completion(id, timeout=30)
    assert output(state) == {"by": "Ada"}
    assert json.loads(state.serialized_custom_status) == "approved"


def test_an_external_event_that_never_comes_times_out(hub):
    state = hub.run(o.approval, input=1)
    assert output(state) == "timed out"


def test_continue_as_new_runs_new_executions_until_done(hub):
    state = hub.run(o.counter, input=0)
    assert state.runtime_status == S.COMPLETED
    assert output(state) == 5


def test_continue_as_new_keeps_events_that_arrived_meanwhile(hub):
    id = hub.client.schedule_new_orchestration(o.collect_events, input=[])
    hub.client.wait_for_orchestration_start(id, timeout=30)
    for i in range(3):
        hub.client.raise_orchestration_event(id, "Item", data=i)
    state = hub.client.wait_for_orchestration_completion(id, timeout=30)
    assert state.runtime_status == S.COMPLETED
    assert sorted(output(state)) == [0, 1, 2]


def test_an_orchestration_can_send_an_event_to_another(hub):
    target = hub.client.schedule_new_orchestration(o.collect_events, input=["a", "b"])
    hub.client.wait_for_orchestration_start(target, timeout=30)
    assert output(hub.run(o.sends_event, input=target)) == "sent"
    state = hub.client.wait_for_orchestration_completion(target, timeout=30)
    assert output(state) == ["a", "b", "from an orchestration"]


def test_suspend_holds_events_until_resume(hub):
    id = hub.client.schedule_new_orchestration(o.custom_status)
    hub.client.wait_for_orchestration_start(id, timeout=30)
    hub.client.suspend_orchestration(id)
    hub.until(lambda: hub.client.get_orchestration_state(id).runtime_status,
              lambda s: s == S.SUSPENDED)
    hub.client.raise_orchestration_event(id, "Next")
    time.sleep(1)
    assert hub.client.get_orchestration_state(id).runtime_status == S.SUSPENDED
    hub.client.resume_orchestration(id)
    state = hub.client.wait_for_orchestration_completion(id, timeout=30)
    assert state.runtime_status == S.COMPLETED


def test_terminate_recursive_ends_the_parent_and_its_children(hub):
    id = new_id("tree")
    hub.client.schedule_new_orchestration(o.parent_of_waiter, instance_id=id)
    hub.until(lambda: hub.client.get_orchestration_state(f"{id}-child"),
              lambda s: s is not None and s.runtime_status == S.RUNNING)
    hub.client.terminate_orchestration(id, output="enough", recursive=True)
    for instance in (id, f"{id}-child"):
        state = hub.client.wait_for_orchestration_completion(instance, timeout=30)
        assert state.runtime_status == S.TERMINATED, instance
    assert output(hub.client.get_orchestration_state(id)) == "enough"


def test_restart_runs_an_instance_again_under_the_same_or_a_new_id(hub):
    first = hub.run(o.echo, input={"n": 1}, instance_id=new_id("restart"))
    same = hub.client.restart_orchestration(first.instance_id)
    assert same == first.instance_id
    again = hub.client.wait_for_orchestration_completion(same, timeout=30)
    assert output(again) == {"n": 1}
    other = hub.client.restart_orchestration(first.instance_id, restart_with_new_instance_id=True)
    assert other != first.instance_id
    assert output(hub.client.wait_for_orchestration_completion(other, timeout=30)) == {"n": 1}


def test_a_running_instance_cannot_be_restarted(hub):
    import grpc

    id = hub.client.schedule_new_orchestration(o.waits_forever)
    hub.client.wait_for_orchestration_start(id, timeout=30)
    with pytest.raises(grpc.RpcError) as e:
        hub.client.restart_orchestration(id)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    hub.client.terminate_orchestration(id)


def test_rewind_reruns_only_the_failed_activity(hub, tmp_marker):
    state = hub.run(o.fails_until_fixed, input=tmp_marker)
    assert state.runtime_status == S.FAILED
    assert "is missing" in state.failure_details.message
    open(tmp_marker, "w").close()
    hub.client.rewind_orchestration(state.instance_id, reason="fixed the bug")
    state = hub.client.wait_for_orchestration_completion(state.instance_id, timeout=30)
    assert state.runtime_status == S.COMPLETED, state.failure_details
    assert output(state) == ["Hello before!", "fixed"]


def test_a_retry_policy_retries_a_failing_activity(hub, tmp_path):
    state = hub.run(o.retries, input=str(tmp_path / "calls"))
    assert state.runtime_status == S.COMPLETED, state.failure_details
    assert output(state) == 3


def test_custom_status_is_visible_while_running(hub):
    id = hub.client.schedule_new_orchestration(o.custom_status)
    hub.until(lambda: hub.client.get_orchestration_state(id).serialized_custom_status,
              lambda s: s is not None and json.loads(s) == {"step": 1})
    hub.client.raise_orchestration_event(id, "Next")
    state = hub.client.wait_for_orchestration_completion(id, timeout=30)
    assert json.loads(state.serialized_custom_status) == {"step": 2}


def test_a_scheduled_start_waits_for_its_time(hub):
    at = datetime.now(timezone.utc) + timedelta(seconds=2)
    id = hub.client.schedule_new_orchestration(o.echo, input="later", start_at=at)
    assert hub.client.get_orchestration_state(id).runtime_status == S.PENDING
    state = hub.client.wait_for_orchestration_completion(id, timeout=30)
    assert output(state) == "later"
    assert datetime.now(timezone.utc) >= at


def test_new_uuid_is_deterministic_across_replays(hub):
    a, b = output(hub.run(o.new_uuids))
    assert a != b and len(a) == 36


def test_purge_removes_an_instance_and_its_children(hub):
    id = new_id("purge")
    assert hub.run(o.parent, input=1, instance_id=id).runtime_status == S.COMPLETED
    result = hub.client.purge_orchestration(id, recursive=True)
    assert result.deleted_instance_count == 4  # the parent and its three children
    assert hub.client.get_orchestration_state(id) is None
    assert hub.client.get_orchestration_state(f"{id}-child") is None


def test_purge_by_filter_removes_only_matching_finished_instances(hub):
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    done = [hub.run(o.echo, input=i).instance_id for i in range(3)]
    running = hub.client.schedule_new_orchestration(o.waits_forever)
    hub.client.wait_for_orchestration_start(running, timeout=30)
    result = hub.client.purge_orchestrations_by(created_time_from=before,
                                                runtime_status=[S.COMPLETED])
    assert result.deleted_instance_count >= 3 and result.is_complete
    assert all(hub.client.get_orchestration_state(i) is None for i in done)
    assert hub.client.get_orchestration_state(running) is not None
    hub.client.terminate_orchestration(running)


def test_query_pages_through_every_instance_with_a_continuation_token(hub, server):
    from durabletask.internal import orchestrator_service_pb2 as pb
    from google.protobuf import wrappers_pb2

    from conftest import stub_for

    prefix = new_id("page")
    ids = sorted(f"{prefix}-{i:02}" for i in range(12))
    for i in ids:
        hub.client.schedule_new_orchestration(o.echo, input=i, instance_id=i)
    stub = stub_for(server)
    seen, token, pages = [], None, 0
    while True:
        query = pb.InstanceQuery(maxInstanceCount=5, instanceIdPrefix=wrappers_pb2.StringValue(value=prefix),
                                 fetchInputsAndOutputs=True)
        if token:
            query.continuationToken.value = token
        page = stub.QueryInstances(pb.QueryInstancesRequest(query=query))
        pages += 1
        assert len(page.orchestrationState) <= 5
        seen += [s.instanceId for s in page.orchestrationState]
        if not page.HasField("continuationToken") or not page.continuationToken.value:
            break
        token = page.continuationToken.value
    assert sorted(seen) == ids
    assert pages >= 3
    # The SDK's own query sees them too, filtered by status.
    for i in ids:
        hub.client.wait_for_orchestration_completion(i, timeout=30)
    states = hub.client.get_all_orchestration_states(
        client.OrchestrationQuery(runtime_status=[S.COMPLETED], fetch_inputs_and_outputs=True))
    found = {s.instance_id: s for s in states if s.instance_id.startswith(prefix)}
    assert sorted(found) == ids
    assert output(found[ids[0]]) == ids[0]


def test_history_streams_every_committed_event(hub):
    state = hub.run(o.hello_sequence)
    history = hub.client.get_orchestration_history(state.instance_id)
    kinds = [type(e).__name__ for e in history]
    assert kinds[0] in ("OrchestratorStartedEvent", "ExecutionStartedEvent"), kinds
    assert kinds.count("TaskScheduledEvent") == 3
    assert kinds.count("TaskCompletedEvent") == 3
    assert "ExecutionCompletedEvent" in kinds


def test_tags_given_at_start_come_back_with_the_instance(hub, server):
    # The Python SDK's client sends tags but its OrchestrationState has no field for them, so
    # the answer is read with the generated stub.
    from durabletask.internal import orchestrator_service_pb2 as pb

    from conftest import stub_for

    id = hub.client.schedule_new_orchestration(o.echo, input=1, tags={"team": "payments"})
    hub.client.wait_for_orchestration_completion(id, timeout=30)
    stub = stub_for(server)
    state = stub.GetInstance(pb.GetInstanceRequest(instanceId=id)).orchestrationState
    assert dict(state.tags) == {"team": "payments"}
    untagged = hub.run(o.echo, input=2).instance_id
    assert dict(stub.GetInstance(pb.GetInstanceRequest(instanceId=untagged)).orchestrationState.tags) == {}
