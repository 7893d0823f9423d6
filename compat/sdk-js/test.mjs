// The Durable Task JavaScript SDK (npm `@microsoft/durabletask-js`, pinned) as worker and client
// against real `taskhub serve` processes that this file starts itself, on SQLite and on Azurite.
//
// For each backend: a server (the binary cargo built; a fresh SQLite file or a fresh task hub on
// Azurite), a `TaskHubGrpcWorker` with the orchestrations below registered and a
// `TaskHubGrpcClient`, both on the server's gRPC endpoint. Nothing is skipped: a missing binary
// or emulator fails with a message that says how to get it. KEEP_SDK_TEST_DATA=1 keeps the temp
// dirs (server.log); SDK_JS_LOG=1 prints the SDK's own log.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync, openSync, closeSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
    ConsoleLogger,
    NoOpLogger,
    OrchestrationStatus as S,
    PurgeInstanceCriteria,
    RetryPolicy,
    TaskHubGrpcClient,
    TaskHubGrpcWorker,
    whenAll,
    whenAny,
    terminateOptions,
} from "@microsoft/durabletask-js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.TASKHUB_BIN ?? path.join(ROOT, "target/debug/taskhub");
const AZURITE = "UseDevelopmentStorage=true";
const logger = () => (process.env.SDK_JS_LOG ? new ConsoleLogger() : new NoOpLogger());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hex = (n) => randomBytes(n).toString("hex");
const newId = (prefix) => `${prefix}-${hex(5)}`;

// ---- activities and orchestrators, written the way an application would write them ----
// Orchestrators must be `async function*`: 0.4.0 only drives async generators; a plain
// `function*` is taken for a value-returning orchestrator and completes at once with output {}.

function sayHello(_ctx, name) {
    return `Hello ${name}!`;
}

function double(_ctx, n) {
    return n * 2;
}

function outOfStock(_ctx, item) {
    throw new Error(`${item} is out of stock`);
}

const calls = new Map(); // key -> number of calls so far
function flaky(_ctx, key) {
    const n = (calls.get(key) ?? 0) + 1;
    calls.set(key, n);
    if (n < 3) throw new Error(`transient failure ${n}`);
    return n;
}

const fixed = new Set(); // keys whose "bug" has been fixed
function failsUntilFixed(_ctx, key) {
    if (!fixed.has(key)) throw new Error(`${key} is broken`);
    return "fixed";
}

async function* helloSequence(ctx) {
    const out = [];
    for (const city of ["Tokyo", "Seattle", "London"]) {
        out.push(yield ctx.callActivity(sayHello, city));
    }
    return out;
}

async function* fanOutFanIn(ctx, n) {
    const tasks = [];
    for (let i = 0; i < n; i++) tasks.push(ctx.callActivity(double, i));
    const results = yield whenAll(tasks);
    return results.reduce((a, b) => a + b, 0);
}

async function* parent(ctx, n) {
    const greetings = yield ctx.callSubOrchestrator(helloSequence, undefined, {
        instanceId: `${ctx.instanceId}-child`,
    });
    const sum = yield ctx.callSubOrchestrator(fanOutFanIn, n);
    return { greetings, sum };
}

async function* timer(ctx, seconds) {
    const start = ctx.currentUtcDateTime;
    yield ctx.createTimer(seconds);
    return (ctx.currentUtcDateTime.getTime() - start.getTime()) / 1000;
}

async function* approval(ctx, timeoutSeconds) {
    ctx.setCustomStatus("waiting");
    const approved = ctx.waitForExternalEvent("Approval");
    const timeout = ctx.createTimer(timeoutSeconds);
    const winner = yield whenAny([approved, timeout]);
    if (winner === approved) {
        ctx.setCustomStatus("approved");
        return approved.getResult();
    }
    ctx.setCustomStatus("timed out");
    return "timed out";
}

async function* counter(ctx, n) {
    if (n < 5) {
        ctx.continueAsNew(n + 1, false);
        return;
    }
    return n;
}

async function* customStatus(ctx) {
    ctx.setCustomStatus({ step: 1 });
    yield ctx.waitForExternalEvent("Next");
    ctx.setCustomStatus({ step: 2 });
    return "done";
}

async function* waitsForever(ctx) {
    yield ctx.waitForExternalEvent("Never");
    return "unreachable";
}

async function* orderItem(ctx, item) {
    const greeting = yield ctx.callActivity(sayHello, "before");
    const shipped = yield ctx.callActivity(outOfStock, item);
    return [greeting, shipped];
}

async function* retries(ctx, key) {
    const retry = new RetryPolicy({ maxNumberOfAttempts: 3, firstRetryIntervalInMilliseconds: 200 });
    return yield ctx.callActivity(flaky, key, { retry });
}

async function* rewindable(ctx, key) {
    const greeting = yield ctx.callActivity(sayHello, "before");
    const result = yield ctx.callActivity(failsUntilFixed, key);
    return [greeting, result];
}

async function* parentOfWaiter(ctx) {
    return yield ctx.callSubOrchestrator(waitsForever, undefined, { instanceId: `${ctx.instanceId}-child` });
}

async function* sendsEvent(ctx, target) {
    ctx.sendEvent(target, "Approval", "from an orchestration");
    return "sent";
}

async function* echo(_ctx, value) {
    return value;
}

const ORCHESTRATORS = [
    helloSequence, fanOutFanIn, parent, timer, approval, counter, customStatus, waitsForever, orderItem,
    retries, rewindable, parentOfWaiter, sendsEvent, echo,
];
const ACTIVITIES = [sayHello, double, outOfStock, flaky, failsUntilFixed];

// ---- a real server per backend ----

function freePort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.once("error", reject);
        s.listen(0, "127.0.0.1", () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

function reachable(port) {
    return new Promise((resolve) => {
        const sock = net.connect({ host: "127.0.0.1", port, timeout: 1000 });
        sock.once("connect", () => (sock.destroy(), resolve(true)));
        sock.once("timeout", () => (sock.destroy(), resolve(false)));
        sock.once("error", () => resolve(false));
    });
}

class Server {
    constructor(backend) {
        this.backend = backend;
        this.workdir = mkdtempSync(path.join(os.tmpdir(), `taskhub-sdk-js-${backend}-`));
        this.hub = `sdkjs${hex(8)}`;
        this.logPath = path.join(this.workdir, "server.log");
    }

    async start() {
        assert.ok(existsSync(BIN),
            `${BIN} does not exist: build it with \`cargo build --bin taskhub\` (or set TASKHUB_BIN)`);
        if (this.backend === "azure") {
            for (const port of [10000, 10001, 10002]) {
                assert.ok(await reachable(port), `Azurite is not running on 127.0.0.1:${port}: ` +
                    "start it with `scripts/azurite.sh start` (scripts/test.sh does this)");
            }
        }
        this.httpPort = await freePort();
        this.grpcPort = await freePort();
        const storage = this.backend === "sqlite" ? `sqlite:${path.join(this.workdir, "taskhub.db")}` : AZURITE;
        const log = openSync(this.logPath, "a");
        this.proc = spawn(BIN, ["serve", "--listen", `127.0.0.1:${this.httpPort}`, "--grpc-listen", this.grpc], {
            cwd: this.workdir,
            env: { ...process.env, AzureWebJobsStorage: storage, TASKHUB_TASK_HUB: this.hub,
                RUST_LOG: process.env.RUST_LOG ?? "info" },
            stdio: ["ignore", log, log],
        });
        closeSync(log);
        let exited = null;
        this.proc.once("exit", (code, signal) => (exited = { code, signal }));
        const deadline = Date.now() + 30_000;
        while (!this.log().includes("serving the management API")) {
            assert.ok(!exited, `taskhub serve exited (${JSON.stringify(exited)}): ${this.log()}`);
            assert.ok(Date.now() < deadline, `taskhub serve did not start in 30 s: ${this.log()}`);
            await sleep(50);
        }
    }

    get grpc() {
        return `127.0.0.1:${this.grpcPort}`;
    }

    log() {
        return existsSync(this.logPath) ? readFileSync(this.logPath, "utf8") : "";
    }

    async http(method, urlPath) {
        const res = await fetch(`http://127.0.0.1:${this.httpPort}${urlPath}`, { method });
        const text = await res.text();
        return { status: res.status, body: text ? JSON.parse(text) : null };
    }

    async stop() {
        if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
        const gone = new Promise((r) => this.proc.once("exit", r));
        this.proc.kill("SIGTERM");
        const timer = setTimeout(() => this.proc.kill("SIGKILL"), 30_000);
        await gone;
        clearTimeout(timer);
    }

    cleanup() {
        if (!process.env.KEEP_SDK_TEST_DATA) rmSync(this.workdir, { recursive: true, force: true });
    }
}

const output = (state) => (state?.serializedOutput ? JSON.parse(state.serializedOutput) : undefined);
const customStatusOf = (state) =>
    state?.serializedCustomStatus ? JSON.parse(state.serializedCustomStatus) : undefined;
const statusName = (s) => S[s] ?? s;

for (const backend of ["sqlite", "azure"]) {
    describe(backend, () => {
        const server = new Server(backend);
        let worker;
        let client;

        before(async () => {
            await server.start();
            worker = new TaskHubGrpcWorker({ hostAddress: server.grpc, logger: logger(), shutdownTimeoutMs: 5000 });
            for (const o of ORCHESTRATORS) worker.addOrchestrator(o);
            for (const a of ACTIVITIES) worker.addActivity(a);
            await worker.start();
            client = new TaskHubGrpcClient({ hostAddress: server.grpc, logger: logger() });
        });

        after(async () => {
            await Promise.allSettled([worker?.stop(), client?.stop()]);
            await server.stop();
            server.cleanup();
        });

        /** Starts an instance and waits for it to finish; returns its final state. */
        async function run(orchestrator, input, options = {}, timeout = 60) {
            const id = await client.scheduleNewOrchestration(orchestrator, input, options);
            const state = await client.waitForOrchestrationCompletion(id, true, timeout);
            assert.ok(state, `instance ${id} vanished`);
            return state;
        }

        /** Polls the instance's state until `check` holds; fails with the last state otherwise. */
        async function until(id, check, what, seconds = 30) {
            const deadline = Date.now() + seconds * 1000;
            for (;;) {
                const state = await client.getOrchestrationState(id);
                if (state && check(state)) return state;
                assert.ok(Date.now() < deadline, `${what} not reached for ${id} in ${seconds} s; last: ` +
                    `${state && statusName(state.runtimeStatus)} ${JSON.stringify(state)}`);
                await sleep(100);
            }
        }

        describe("scenarios", { concurrency: true }, () => {
            test("an activity sequence completes with its results", async () => {
                const state = await run(helloSequence);
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.equal(state.name, "helloSequence");
                assert.deepEqual(output(state), ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]);
            });

            test("fan-out/fan-in sums parallel activities", async () => {
                const state = await run(fanOutFanIn, 20);
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.equal(output(state), 2 * ((19 * 20) / 2));
            });

            test("a sub-orchestration reports to its parent", async () => {
                const id = newId("parent");
                const state = await run(parent, 4, { instanceId: id });
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.deepEqual(output(state), {
                    greetings: ["Hello Tokyo!", "Hello Seattle!", "Hello London!"],
                    sum: 12,
                });
                const child = await client.getOrchestrationState(`${id}-child`);
                assert.equal(statusName(child?.runtimeStatus), "COMPLETED");
                assert.equal(child.name, "helloSequence");
            });

            test("a durable timer fires after its time", async () => {
                const started = Date.now();
                const state = await run(timer, 1.5);
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.ok(output(state) >= 1.5, `orchestration clock advanced only ${output(state)} s`);
                assert.ok(Date.now() - started >= 1400, `finished after ${Date.now() - started} ms`);
            });

            test("an external event raised by the client wins over its timeout", async () => {
                const id = await client.scheduleNewOrchestration(approval, 60);
                await until(id, (s) => customStatusOf(s) === "waiting", "custom status 'waiting'");
                await client.raiseOrchestrationEvent(id, "Approval", { by: "Ada" });
                const state = await client.waitForOrchestrationCompletion(id, true, 60);
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.deepEqual(output(state), { by: "Ada" });
                assert.equal(customStatusOf(state), "approved");
            });

            test("continue-as-new runs new executions until done", async () => {
                const state = await run(counter, 0);
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.equal(output(state), 5);
            });

            test("suspend holds events until resume", async () => {
                const id = await client.scheduleNewOrchestration(customStatus);
                await until(id, (s) => customStatusOf(s)?.step === 1, "custom status step 1");
                await client.suspendOrchestration(id);
                await until(id, (s) => s.runtimeStatus === S.SUSPENDED, "SUSPENDED");
                await client.raiseOrchestrationEvent(id, "Next");
                await sleep(1500);
                const held = await client.getOrchestrationState(id);
                assert.equal(statusName(held.runtimeStatus), "SUSPENDED");
                assert.deepEqual(customStatusOf(held), { step: 1 });
                await client.resumeOrchestration(id);
                const state = await client.waitForOrchestrationCompletion(id, true, 60);
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.equal(output(state), "done");
                assert.deepEqual(customStatusOf(state), { step: 2 });
            });

            test("terminate ends an instance with the given output", async () => {
                const id = await client.scheduleNewOrchestration(waitsForever);
                await until(id, (s) => s.runtimeStatus === S.RUNNING, "RUNNING");
                await client.terminateOrchestration(id, { reason: "enough" });
                const state = await client.waitForOrchestrationCompletion(id, true, 60);
                assert.equal(statusName(state.runtimeStatus), "TERMINATED");
                assert.deepEqual(output(state), { reason: "enough" });
            });

            test("custom status is visible while running", async () => {
                const id = await client.scheduleNewOrchestration(customStatus);
                const running = await until(id, (s) => customStatusOf(s)?.step === 1, "custom status step 1");
                assert.equal(statusName(running.runtimeStatus), "RUNNING");
                await client.raiseOrchestrationEvent(id, "Next");
                const state = await client.waitForOrchestrationCompletion(id, true, 60);
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.deepEqual(customStatusOf(state), { step: 2 });
            });

            test("purge removes a finished instance", async () => {
                const id = newId("purge");
                const state = await run(helloSequence, undefined, { instanceId: id });
                assert.equal(statusName(state.runtimeStatus), "COMPLETED");
                const result = await client.purgeOrchestration(id);
                assert.equal(result?.deletedInstanceCount, 1);
                assert.equal(await client.getOrchestrationState(id), undefined);
                const again = await client.purgeOrchestration(id);
                assert.equal(again?.deletedInstanceCount, 0);
            });

            test("an activity that throws fails the orchestration with its message", async () => {
                const state = await run(orderItem, "teapot");
                assert.equal(statusName(state.runtimeStatus), "FAILED");
                assert.ok(state.failureDetails, "no failure details");
                assert.match(state.failureDetails.message, /teapot is out of stock/);
            });

            test("an instance started by the JS client is visible over HTTP", async () => {
                const id = newId("http");
                const state = await run(fanOutFanIn, 5, { instanceId: id });
                assert.equal(statusName(state.runtimeStatus), "COMPLETED");
                const { status, body } = await server.http("GET", `/runtime/webhooks/durabletask/instances/${id}`);
                assert.equal(status, 200, JSON.stringify(body));
                assert.equal(body.instanceId, id);
                assert.equal(body.name, "fanOutFanIn");
                assert.equal(body.runtimeStatus, "Completed");
                assert.deepEqual(body.output, output(state));
                assert.deepEqual(body.input, 5);
            });

            test("the query API finds instances by prefix and status", async () => {
                const prefix = newId("query");
                const ids = [0, 1, 2].map((i) => `${prefix}-${i}`);
                for (const id of ids) await run(counter, 5, { instanceId: id });
                const found = [];
                for await (const s of client.getAllInstances({
                    instanceIdPrefix: prefix, statuses: [S.COMPLETED], fetchInputsAndOutputs: true, pageSize: 2,
                })) {
                    found.push(s);
                }
                assert.deepEqual(found.map((s) => s.instanceId).sort(), ids);
                assert.ok(found.every((s) => output(s) === 5));
            });

            test("a retry policy retries a failing activity", async () => {
                const state = await run(retries, newId("flaky"));
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.equal(output(state), 3);
            });

            test("rewind reruns a failed instance from its failure", async () => {
                const key = newId("rewind");
                const failed = await run(rewindable, key);
                assert.equal(statusName(failed.runtimeStatus), "FAILED");
                assert.match(failed.failureDetails?.message ?? "", /is broken/);
                fixed.add(key);
                await client.rewindInstance(failed.instanceId, "fixed the bug");
                await until(failed.instanceId, (s) => s.runtimeStatus !== S.FAILED, "leaving FAILED");
                const state = await client.waitForOrchestrationCompletion(failed.instanceId, true, 60);
                assert.equal(statusName(state.runtimeStatus), "COMPLETED", JSON.stringify(state.failureDetails));
                assert.deepEqual(output(state), ["Hello before!", "fixed"]);
            });

            test("history lists every committed event", async () => {
                const state = await run(helloSequence);
                const kinds = (await client.getOrchestrationHistory(state.instanceId)).map((e) => e.type);
                assert.ok(["OrchestratorStarted", "ExecutionStarted"].includes(kinds[0]), kinds.join());
                assert.equal(kinds.filter((k) => k === "TaskScheduled").length, 3, kinds.join());
                assert.equal(kinds.filter((k) => k === "TaskCompleted").length, 3, kinds.join());
                assert.ok(kinds.includes("ExecutionCompleted"), kinds.join());
            });

            test("restart runs a finished instance again under the same or a new id", async () => {
                const first = await run(echo, { n: 1 }, { instanceId: newId("restart") });
                const same = await client.restartOrchestration(first.instanceId);
                assert.equal(same, first.instanceId);
                assert.deepEqual(output(await client.waitForOrchestrationCompletion(same, true, 60)), { n: 1 });
                const other = await client.restartOrchestration(first.instanceId, true);
                assert.notEqual(other, first.instanceId);
                assert.deepEqual(output(await client.waitForOrchestrationCompletion(other, true, 60)), { n: 1 });
            });

            test("recursive terminate ends the parent and its child", async () => {
                const id = newId("tree");
                await client.scheduleNewOrchestration(parentOfWaiter, undefined, { instanceId: id });
                await until(`${id}-child`, (s) => s.runtimeStatus === S.RUNNING, "child RUNNING");
                await client.terminateOrchestration(id, terminateOptions({ output: "enough", recursive: true }));
                for (const instance of [id, `${id}-child`]) {
                    const state = await client.waitForOrchestrationCompletion(instance, true, 60);
                    assert.equal(statusName(state.runtimeStatus), "TERMINATED", instance);
                }
                assert.equal(output(await client.getOrchestrationState(id)), "enough");
            });

            test("an orchestration sends an event to another", async () => {
                const target = await client.scheduleNewOrchestration(approval, 60);
                await until(target, (s) => customStatusOf(s) === "waiting", "custom status 'waiting'");
                assert.equal(output(await run(sendsEvent, target)), "sent");
                const state = await client.waitForOrchestrationCompletion(target, true, 60);
                assert.equal(output(state), "from an orchestration");
            });

            test("a scheduled start waits for its time", async () => {
                const at = new Date(Date.now() + 2000);
                const id = await client.scheduleNewOrchestration(echo, "later", { startAt: at });
                assert.equal(statusName((await client.getOrchestrationState(id)).runtimeStatus), "PENDING");
                const state = await client.waitForOrchestrationCompletion(id, true, 60);
                assert.equal(output(state), "later");
                assert.ok(Date.now() >= at.getTime() - 50, "completed before its start time");
            });

            test("unknown instances: no state, NOT_FOUND for events and terminate", async () => {
                const id = newId("nobody");
                assert.equal(await client.getOrchestrationState(id), undefined);
                await assert.rejects(client.raiseOrchestrationEvent(id, "Approval", 1), (e) => e.code === 5);
                await assert.rejects(client.terminateOrchestration(id), (e) => e.code === 5);
                assert.equal((await client.purgeOrchestration(id))?.deletedInstanceCount, 0);
            });

            test("listInstanceIds pages with a continuation key", async () => {
                for (let i = 0; i < 3; i++) await run(echo, i);
                const first = await client.listInstanceIds({ runtimeStatus: [S.COMPLETED], pageSize: 2 });
                assert.equal(first.values.length, 2);
                assert.ok(first.hasMoreResults, "no continuation key after a full page");
                const second = await client.listInstanceIds({
                    runtimeStatus: [S.COMPLETED], pageSize: 2, lastInstanceKey: first.continuationToken,
                });
                assert.ok(second.values.length >= 1);
                assert.ok(second.values.every((v) => !first.values.includes(v)), "pages overlap");
            });
        });

        // Alone, after the others: it purges every completed instance created since it began.
        test("purge by filter removes only matching finished instances", async () => {
            const since = new Date(Date.now() - 1000);
            const done = [];
            for (let i = 0; i < 3; i++) done.push((await run(echo, i)).instanceId);
            const running = await client.scheduleNewOrchestration(waitsForever);
            await until(running, (s) => s.runtimeStatus === S.RUNNING, "RUNNING");
            const criteria = new PurgeInstanceCriteria();
            criteria.setCreatedTimeFrom(since);
            criteria.setRuntimeStatusList([S.COMPLETED]);
            const result = await client.purgeOrchestration(criteria);
            assert.ok(result?.deletedInstanceCount >= 3, JSON.stringify(result));
            for (const id of done) assert.equal(await client.getOrchestrationState(id), undefined, id);
            assert.ok(await client.getOrchestrationState(running), "the running instance was purged");
            await client.terminateOrchestration(running);
        });
    });
}
