// HelloCities5 (five sequential activities) through the Durable Task JavaScript SDK's worker
// against `target/release/taskhub serve` on file SQLite (durable commits). Prints throughput,
// latency and taskhub's CPU per work item.
//
//   (cd bench/sdk/js && npm ci && node bench.mjs --instances 2000)
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { NoOpLogger, OrchestrationStatus, TaskHubGrpcClient, TaskHubGrpcWorker } from "@microsoft/durabletask-js";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const BIN = path.join(ROOT, "target/release/taskhub");
const arg = (name, dflt) => {
    const i = process.argv.indexOf(name);
    return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const INSTANCES = arg("--instances", 2000);
const TICKS = 100; // USER_HZ on Linux

function sayHello(_ctx, city) {
    return `Hello ${city}!`;
}

async function* helloCities5(ctx) {
    const out = [];
    for (const city of ["Tokyo", "Seattle", "London", "Cairo", "Lima"]) {
        out.push(yield ctx.callActivity(sayHello, city));
    }
    return out;
}

const freePort = () =>
    new Promise((resolve) => {
        const s = net.createServer().listen(0, "127.0.0.1", () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });

const cpuSeconds = (pid) => {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICKS;
};

async function waitPort(port) {
    for (let i = 0; i < 300; i++) {
        const ok = await new Promise((r) => {
            const c = net.connect(port, "127.0.0.1", () => { c.end(); r(true); });
            c.on("error", () => r(false));
        });
        if (ok) return;
        await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`nothing listens on ${port}`);
}

if (!existsSync(BIN)) throw new Error(`${BIN} is missing: cargo build --release`);
const dir = mkdtempSync(path.join(os.tmpdir(), "sdk-js-bench-"));
const grpcPort = await freePort();
const server = spawn(BIN, ["serve", "--listen", `127.0.0.1:${await freePort()}`, "--grpc-listen", `127.0.0.1:${grpcPort}`], {
    cwd: dir,
    env: { ...process.env, AzureWebJobsStorage: `sqlite:${dir}/bench.db`, RUST_LOG: "warn" },
    stdio: "ignore",
});
try {
    await waitPort(grpcPort);
    const address = `127.0.0.1:${grpcPort}`;
    const worker = new TaskHubGrpcWorker({ hostAddress: address, logger: new NoOpLogger() });
    worker.addOrchestrator(helloCities5);
    worker.addActivity(sayHello);
    await worker.start();
    const client = new TaskHubGrpcClient({ hostAddress: address, logger: new NoOpLogger() });
    const cpu0 = cpuSeconds(server.pid);
    const began = Date.now();
    const ids = [];
    for (let i = 0; i < INSTANCES; i++) {
        ids.push(await client.scheduleNewOrchestration(helloCities5, undefined, { instanceId: `bench-${i}` }));
    }
    const started = Date.now();
    const latencies = [];
    for (const id of ids) {
        const s = await client.waitForOrchestrationCompletion(id, true, 600);
        if (s.runtimeStatus !== OrchestrationStatus.COMPLETED || !s.serializedOutput.includes("Hello Lima!")) {
            throw new Error(`${id}: ${JSON.stringify(s)}`);
        }
        latencies.push(s.lastUpdatedAt.getTime() - s.createdAt.getTime());
    }
    const elapsed = (Date.now() - began) / 1000;
    const cpu = cpuSeconds(server.pid) - cpu0;
    latencies.sort((a, b) => a - b);
    const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))];
    const workItems = INSTANCES * 11;
    console.log(`backend=taskhub sdk=js instances=${INSTANCES}`);
    console.log(`  starts: ${(INSTANCES / ((started - began) / 1000)).toFixed(0)}/s`);
    console.log(`  throughput: ${(INSTANCES / elapsed).toFixed(1)} orch/s (${elapsed.toFixed(1)} s, first start to last completion)`);
    console.log(`  latency (created -> completed): p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms`);
    console.log(`  backend CPU: ${cpu.toFixed(2)} s = ${((cpu / workItems) * 1000).toFixed(3)} ms per work item (${workItems} work items)`);
    await worker.stop();
    await client.stop();
} finally {
    server.kill("SIGKILL");
}
process.exit(0);
