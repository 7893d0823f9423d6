"""The orchestrators and activities the SDK tests run, registered on every test worker.

Written the way an application would write them with the Durable Task Python SDK; nothing here
knows it runs against taskhub.
"""

from datetime import timedelta
import os

from durabletask import task

# ---- activities ----


def say_hello(ctx: task.ActivityContext, name: str) -> str:
    return f"Hello {name}!"


def double(ctx: task.ActivityContext, n: int) -> int:
    return n * 2


def fail_until_marker(ctx: task.ActivityContext, marker: str) -> str:
    """Fails until the file `marker` exists: a bug that is "fixed" by creating it."""
    if not os.path.exists(marker):
        raise ValueError(f"marker {marker} is missing")
    return "fixed"


def flaky(ctx: task.ActivityContext, counter: str) -> int:
    """Fails on its first two calls (counted in the file `counter`), then succeeds."""
    calls = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    with open(counter, "w") as f:
        f.write(str(calls))
    if calls < 3:
        raise RuntimeError(f"transient failure {calls}")
    return calls


def sleep_then_answer(ctx: task.ActivityContext, seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


ACTIVITIES = [say_hello, double, fail_until_marker, flaky, sleep_then_answer]

# ---- orchestrators ----


def hello_sequence(ctx: task.OrchestrationContext, _):
    out = []
    for city in ["Tokyo", "Seattle", "London"]:
        out.append((yield ctx.call_activity(say_hello, input=city)))
    return out


def hello_cities5(ctx: task.OrchestrationContext, _):
    out = []
    for city in ["Tokyo", "Seattle", "London", "Cairo", "Lima"]:
        out.append((yield ctx.call_activity(say_hello, input=city)))
    return out


def fan_out_fan_in(ctx: task.OrchestrationContext, n: int):
    results = yield task.when_all([ctx.call_activity(double, input=i) for i in range(n)])
    return sum(results)


def parent(ctx: task.OrchestrationContext, n: int):
    children = [ctx.call_sub_orchestrator(fan_out_fan_in, input=n) for _ in range(2)]
    first = yield ctx.call_sub_orchestrator(hello_sequence, instance_id=f"{ctx.instance_id}-child")
    sums = yield task.when_all(children)
    return {"greetings": first, "sums": sums}


def timer(ctx: task.OrchestrationContext, seconds: float):
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - start).total_seconds()


def approval(ctx: task.OrchestrationContext, timeout_seconds: float):
    ctx.set_custom_status("waiting")
    approved = ctx.wait_for_external_event("Approval")
    timeout = ctx.create_timer(timedelta(seconds=timeout_seconds))
    winner = yield task.when_any([approved, timeout])
    if winner == approved:
        ctx.set_custom_status("approved")
        return approved.get_result()
    ctx.set_custom_status("timed out")
    return "timed out"


def counter(ctx: task.OrchestrationContext, n: int):
    if n < 5:
        ctx.continue_as_new(n + 1)
        return None
    return n


def collect_events(ctx: task.OrchestrationContext, state):
    """Continue-as-new after each event, keeping the events that arrived meanwhile."""
    state = state or []
    value = yield ctx.wait_for_external_event("Item")
    state = state + [value]
    if len(state) < 3:
        ctx.continue_as_new(state, save_events=True)
        return None
    return state


def waits_forever(ctx: task.OrchestrationContext, _):
    yield ctx.wait_for_external_event("Never")
    return "unreachable"


def parent_of_waiter(ctx: task.OrchestrationContext, _):
    result = yield ctx.call_sub_orchestrator(waits_forever, instance_id=f"{ctx.instance_id}-child")
    return result


def fails_until_fixed(ctx: task.OrchestrationContext, marker: str):
    greeting = yield ctx.call_activity(say_hello, input="before")
    fixed = yield ctx.call_activity(fail_until_marker, input=marker)
    return [greeting, fixed]


def retries(ctx: task.OrchestrationContext, counter_file: str):
    policy = task.RetryPolicy(
        first_retry_interval=timedelta(milliseconds=200),
        max_number_of_attempts=3,
    )
    return (yield ctx.call_activity(flaky, input=counter_file, retry_policy=policy))


def custom_status(ctx: task.OrchestrationContext, _):
    ctx.set_custom_status({"step": 1})
    yield ctx.wait_for_external_event("Next")
    ctx.set_custom_status({"step": 2})
    return "done"


def echo(ctx: task.OrchestrationContext, value):
    return value


def slow_activity(ctx: task.OrchestrationContext, seconds: float):
    return (yield ctx.call_activity(sleep_then_answer, input=seconds))


def new_uuids(ctx: task.OrchestrationContext, _):
    return [ctx.new_uuid(), ctx.new_uuid()]


def sends_event(ctx: task.OrchestrationContext, target: str):
    ctx.send_event(target, "Item", data="from an orchestration")
    return "sent"


ORCHESTRATORS = [
    hello_sequence,
    hello_cities5,
    fan_out_fan_in,
    parent,
    timer,
    approval,
    counter,
    collect_events,
    waits_forever,
    parent_of_waiter,
    fails_until_fixed,
    retries,
    custom_status,
    echo,
    slow_activity,
    new_uuids,
    sends_event,
]


def register(worker):
    for o in ORCHESTRATORS:
        worker.add_orchestrator(o)
    for a in ACTIVITIES:
        worker.add_activity(a)
    return worker
