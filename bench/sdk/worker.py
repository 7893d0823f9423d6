"""The benchmark's SDK worker, in a process of its own: `python worker.py ADDR [THREADS]`
(THREADS: the SDK's thread pool size; its default is the processor count + 4)."""

import sys
import time

from durabletask import task, worker


def say_hello(ctx: task.ActivityContext, city: str) -> str:
    return f"Hello {city}!"


def hello_cities5(ctx: task.OrchestrationContext, _):
    out = []
    for city in ["Tokyo", "Seattle", "London", "Cairo", "Lima"]:
        out.append((yield ctx.call_activity(say_hello, input=city)))
    return out


threads = int(sys.argv[2]) if len(sys.argv) > 2 else None
w = worker.TaskHubGrpcWorker(
    host_address=sys.argv[1],
    concurrency_options=worker.ConcurrencyOptions(maximum_thread_pool_workers=threads),
)
w.add_orchestrator(hello_cities5)
w.add_activity(say_hello)
w.start()
print("ready", flush=True)
while True:
    time.sleep(1)
