"""The benchmark's SDK worker, in a process of its own: `python worker.py ADDR`."""

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


w = worker.TaskHubGrpcWorker(host_address=sys.argv[1])
w.add_orchestrator(hello_cities5)
w.add_activity(say_hello)
w.start()
print("ready", flush=True)
while True:
    time.sleep(1)
