"""A worker in a process of its own, so a test can kill it with SIGKILL: `python worker_process.py ADDR`."""

import sys
import time

from durabletask import worker

import orchestrations

w = orchestrations.register(worker.TaskHubGrpcWorker(host_address=sys.argv[1]))
w.start()
print("worker started", flush=True)
while True:
    time.sleep(1)
