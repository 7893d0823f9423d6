// Drives a running taskhub server with the unmodified npm `durable-functions` client.
//
// The client is constructed standalone from binding data, exactly as the Functions host would
// hand it over, in both of its modes: the legacy one (management URLs from the webhook
// payload) and the local-RPC one (`rpcBaseUrl`). TASKHUB_URL is the server's origin.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { DurableClient } = require("durable-functions/lib/src/durableClient/DurableClient.js");
const { HttpRequest } = require("@azure/functions");

const origin = process.env.TASKHUB_URL ?? "http://127.0.0.1:7071";
const base = `${origin}/runtime/webhooks/durabletask`;
const hubQuery = "taskHub=DurableFunctionsHub&connection=Storage";
const key = process.env.TASKHUB_ACCESS_KEY;
const query = key ? `${hubQuery}&code=${encodeURIComponent(key)}` : hubQuery;

/** Binding data as the Durable Functions extension emits it for a client binding. */
function bindingData({ rpc }) {
    const inst = `${base}/instances/INSTANCEID`;
    return {
        taskHubName: "DurableFunctionsHub",
        creationUrls: {
            createNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?${query}`,
            createAndWaitOnNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&${query}`,
        },
        managementUrls: {
            id: "INSTANCEID",
            statusQueryGetUri: `${inst}?${query}`,
            sendEventPostUri: `${inst}/raiseEvent/{eventName}?${query}`,
            terminatePostUri: `${inst}/terminate?reason={text}&${query}`,
            rewindPostUri: `${inst}/rewind?reason={text}&${query}`,
            purgeHistoryDeleteUri: `${inst}?${query}`,
            restartPostUri: `${inst}/restart?${query}`,
            suspendPostUri: `${inst}/suspend?reason={text}&${query}`,
            resumePostUri: `${inst}/resume?reason={text}&${query}`,
        },
        baseUrl: base,
        requiredQueryStringParameters: key ? `code=${encodeURIComponent(key)}` : "",
        rpcBaseUrl: rpc ? `${base}/` : undefined,
    };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(client, id, check, seconds = 20) {
    const deadline = Date.now() + seconds * 1000;
    for (;;) {
        const status = await client.getStatus(id);
        if (check(status)) return status;
        assert.ok(Date.now() < deadline, `condition not reached for ${id}: ${JSON.stringify(status)}`);
        await sleep(50);
    }
}

const done = (s) => ["Completed", "Failed", "Terminated"].includes(s.runtimeStatus);

for (const mode of ["legacy", "rpc"]) {
    const client = new DurableClient(bindingData({ rpc: mode === "rpc" }));
    const id = (name) => `${mode}-${name}-${Date.now()}`;

    test(`${mode}: start, status, list`, async () => {
        const instanceId = await client.startNew("HelloSequence", { instanceId: id("hello") });
        assert.match(instanceId, /^(legacy|rpc)-hello-/);
        const status = await until(client, instanceId, done);
        assert.equal(status.runtimeStatus, "Completed");
        assert.deepEqual(status.output, ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]);
        assert.equal(status.name, "HelloSequence");

        // The client sends showHistory but reads `history`, while the API (ours and the real
        // one) answers `historyEvents`; so only check that the request is understood.
        const withHistory = await client.getStatus(instanceId, {
            showHistory: true,
            showHistoryOutput: true,
        });
        assert.equal(withHistory.runtimeStatus, "Completed");

        const generated = await client.startNew("HelloSequence", { input: { any: "input" } });
        assert.match(generated, /^[0-9a-f]{32}$/);
        const s = await until(client, generated, done);
        assert.deepEqual(s.input, { any: "input" });

        const completed = await client.getStatusBy({ runtimeStatus: ["Completed"] });
        assert.ok(completed.some((i) => i.instanceId === instanceId));
        const all = await client.getStatusAll();
        assert.ok(all.some((i) => i.instanceId === generated));
    });

    test(`${mode}: raise event`, async () => {
        const instanceId = await client.startNew("WaitForApproval", { instanceId: id("approval") });
        await until(client, instanceId, (s) => s.customStatus === "waiting");
        await client.raiseEvent(instanceId, "Approval", { approved: true });
        const status = await until(client, instanceId, done);
        assert.equal(status.runtimeStatus, "Completed");
        assert.deepEqual(status.output, { approved: true });
        await assert.rejects(client.raiseEvent(`${instanceId}-nobody`, "Approval", 1), /No instance/);
    });

    test(`${mode}: terminate, suspend, resume`, async () => {
        const instanceId = await client.startNew("LongTimer", { instanceId: id("timer"), input: 60 });
        await until(client, instanceId, (s) => s.runtimeStatus === "Running");
        await client.suspend(instanceId, "pause");
        await until(client, instanceId, (s) => s.runtimeStatus === "Suspended");
        await client.resume(instanceId, "go on");
        await until(client, instanceId, (s) => s.runtimeStatus === "Running");
        await client.terminate(instanceId, "enough");
        const status = await until(client, instanceId, done);
        assert.equal(status.runtimeStatus, "Terminated");
        assert.equal(status.output, "enough");
        await assert.rejects(client.terminate(`${instanceId}-nobody`, "x"), /No instance/);
    });

    test(`${mode}: rewind`, async () => {
        const instanceId = await client.startNew("FailAtStep", { instanceId: id("flaky") });
        await until(client, instanceId, (s) => s.runtimeStatus === "Failed");
        await client.rewind(instanceId, "try again");
        const status = await until(client, instanceId, (s) => s.runtimeStatus === "Completed");
        assert.equal(status.output, "ok");
    });

    test(`${mode}: purge`, async () => {
        const instanceId = await client.startNew("HelloSequence", { instanceId: id("purge") });
        await until(client, instanceId, done);
        assert.equal((await client.purgeInstanceHistory(instanceId)).instancesDeleted, 1);
        assert.equal((await client.purgeInstanceHistory(instanceId)).instancesDeleted, 0);

        const from = new Date();
        const a = await client.startNew("HelloSequence", { instanceId: id("bulk-a") });
        const b = await client.startNew("HelloSequence", { instanceId: id("bulk-b") });
        await until(client, a, done);
        await until(client, b, done);
        const result = await client.purgeInstanceHistoryBy({
            createdTimeFrom: new Date(from.getTime() - 1000),
            runtimeStatus: ["Completed"],
        });
        assert.ok(result.instancesDeleted >= 2, JSON.stringify(result));
    });

    test(`${mode}: wait for completion`, async () => {
        const request = new HttpRequest({ url: `${origin}/api/orchestrators/HelloSequence`, method: "POST" });
        const instanceId = await client.startNew("HelloSequence");
        const response = await client.waitForCompletionOrCreateCheckStatusResponse(request, instanceId, {
            timeoutInMilliseconds: 20000,
            retryIntervalInMilliseconds: 100,
        });
        assert.equal(response.status, 200);
        assert.deepEqual(await response.json(), ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]);

        const timer = await client.startNew("LongTimer", { input: 60 });
        const pending = await client.waitForCompletionOrCreateCheckStatusResponse(request, timer, {
            timeoutInMilliseconds: 200,
            retryIntervalInMilliseconds: 100,
        });
        assert.equal(pending.status, 202);
        const payload = await pending.json();
        assert.equal(payload.id, timer);
        // The payload's status URL works against the server as given.
        const res = await fetch(payload.statusQueryGetUri);
        assert.equal(res.status, 202);
        await client.terminate(timer, "done");
    });
}
