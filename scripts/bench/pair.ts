// npm run bench:pair -- [--rows 177748] [--pair eurusd] [--memory 12Gi] [--cpus N] [--budget 3GiB] [--dir bench] [--sim PATH] [--check] [--keep]
// One pair end to end at full shape, the way Cloud Run runs it: the real job (`node src/main.ts`)
// on the sample warehouse (built and cached under --dir the first time: ~7 min, ~9.5 GiB at
// 177,748 rows), OUTPUT_URI a directory on disk standing in for the bucket. With --memory the job
// runs inside ../shared/cloudrun-sim (or --sim): a memory cgroup of that size with no swap, WORK_DIR
// in /dev/shm counted against it, the CLOUD_RUN_* variables; without it, under GNU time. --check
// then reads the file back with DuckDB and polars (rows, key unique and increasing, sampled cells
// of the first, a middle and the last row group against the warehouse's own join, offsets beyond
// 4 GiB). Ends with one JSON line (per-stage seconds, peak memory, bytes staged, compose calls),
// also written to <dir>/results/.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "177748" },
    pair: { type: "string", default: "eurusd" },
    memory: { type: "string" },
    cpus: { type: "string" },
    budget: { type: "string" },
    dir: { type: "string", default: path.join(ROOT, "bench") },
    sim: { type: "string", default: path.join(ROOT, "..", "shared", "cloudrun-sim") },
    check: { type: "boolean", default: false },
    keep: { type: "boolean", default: false },
  },
});
const say = (line: string) => process.stderr.write(`[bench:pair] ${line}\n`);
const rows = Number(values.rows);
if (!Number.isInteger(rows) || rows < 100) {
  process.stderr.write("bench:pair: --rows must be a whole number of at least 100\n");
  process.exit(2);
}
if (values.memory !== undefined && !existsSync(values.sim)) {
  process.stderr.write(`bench:pair: --memory needs cloudrun-sim, not found at ${values.sim} (pass --sim PATH)\n`);
  process.exit(2);
}
const pair = values.pair;
const dir = path.resolve(values.dir);
const warehouse = path.join(dir, `${pair}-${rows}.duckdb`);
const run = path.join(dir, "pair-run");
const bucket = path.join(run, "bucket");

if (!existsSync(warehouse)) {
  await mkdir(dir, { recursive: true });
  say(`building the sample warehouse ${warehouse} (${rows} rows a table); cached for later runs`);
  const { buildSampleWarehouse } = await import("../../standins/sample/build.ts");
  await buildSampleWarehouse({ path: warehouse, pair, rows });
}
await rm(run, { recursive: true, force: true });
await mkdir(bucket, { recursive: true });

const env: Record<string, string> = {
  PATH: process.env.PATH ?? "",
  HOME: process.env.HOME ?? "/tmp",
  TARGET_PAIR: pair,
  WAREHOUSE: warehouse,
  OUTPUT_URI: bucket,
  MIN_ROWS: String(Math.min(100_000, Math.floor(rows * 0.9))),
  LOG_FORMAT: "json",
  // What the image sets (Dockerfile.cloudrun).
  MALLOC_ARENA_MAX: "2",
  GLIBC_TUNABLES: "glibc.malloc.hugetlb=1",
  ...(values.budget ? { MEMORY_BUDGET: values.budget } : {}),
  // Without cloudrun-sim WORK_DIR stays on disk here; with it, the sim puts it in /dev/shm.
  ...(values.memory === undefined ? { WORK_DIR: path.join(run, "work") } : {}),
};
const timed = existsSync("/usr/bin/time") ? ["/usr/bin/time", "-f", "__time user=%U sys=%S peak_kb=%M"] : [];
const job = [...timed, process.execPath, path.join(ROOT, "src", "main.ts")];
const [command, ...argv] =
  values.memory !== undefined
    ? [values.sim, "--memory", values.memory, ...(values.cpus ? ["--cpus", values.cpus] : []), "--", ...job]
    : job;

say(`running ${values.memory !== undefined ? `inside cloudrun-sim --memory ${values.memory}` : "under GNU time"}: TARGET_PAIR=${pair} on ${path.relative(ROOT, warehouse)}`);
const started = performance.now();
const lines: Array<Record<string, unknown>> = [];
let sim: Record<string, unknown> | undefined;
let peakKb: number | undefined;
let cpu: { user: number; sys: number } | undefined;
const code = await new Promise<number | null>((resolve, reject) => {
  const child = spawn(command!, argv, { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  createInterface({ input: child.stdout }).on("line", (line) => {
    if (!line.startsWith("{")) return;
    // The job's log lines (pino): a string message, the rest varies by line.
    const rec = JSON.parse(line) as { message?: string; [field: string]: unknown };
    lines.push(rec);
    const msg = rec.message ?? "";
    if (/^stage \w+: done|^extracted \d+\/\d+|^\d+ training rows|^memory plan|^composed|^published|^done:/.test(msg) || rec.severity === "ERROR") say(`  ${msg}`);
  });
  createInterface({ input: child.stderr }).on("line", (line) => {
    const timedLine = /^__time user=([\d.]+) sys=([\d.]+) peak_kb=(\d+)$/.exec(line);
    if (timedLine) {
      cpu = { user: Number(timedLine[1]), sys: Number(timedLine[2]) };
      peakKb = Number(timedLine[3]);
    }
    else if (line.startsWith('{"exit"')) sim = JSON.parse(line) as Record<string, unknown>;
    else say(`  stderr: ${line}`);
  });
  child.on("error", reject);
  child.on("close", resolve);
});
const wall = (performance.now() - started) / 1000;
const done = lines.find((l) => String(l.message).startsWith("done:"));
const stage = (name: string) => lines.find((l) => l.stage === name && String(l.message).startsWith(`stage ${name}: done`)) ?? {};
const extract = stage("extract");
const upload = stage("upload");
const result: Record<string, unknown> = {
  pair,
  rows: done?.rows ?? null,
  columns: done?.columns ?? null,
  exit: sim?.exit ?? code,
  oom_killed: sim?.oom_killed ?? null,
  wall_s: Number(wall.toFixed(1)),
  stage_seconds: done?.durations ?? Object.fromEntries(lines.filter((l) => /^stage \w+: (done|failed)/.test(String(l.message))).map((l) => [l.stage, l.seconds])),
  memory_limit: values.memory ?? null,
  peak_rss_shmem_bytes: sim?.peak_rss_shmem_bytes ?? null,
  peak_rss_bytes: peakKb !== undefined ? peakKb * 1024 : null,
  cpu_user_s: cpu?.user ?? null,
  cpu_sys_s: cpu?.sys ?? null,
  peak_charged_bytes: sim?.peak_charged_bytes ?? null,
  budget_bytes: lines.find((l) => l.memoryBudgetBytes !== undefined)?.memoryBudgetBytes ?? null,
  parts: extract.parts ?? null,
  row_groups: extract.rowGroups ?? null,
  bytes_staged: extract.stagedBytes ?? null,
  file_bytes: upload.bytes ?? null,
  compose_calls: upload.composeCalls ?? null,
  component_count: upload.componentCount ?? null,
  cpus: os.availableParallelism(),
  load_avg_1m_after: Number(os.loadavg()[0]!.toFixed(2)),
};

if (values.check && result.exit === 0) {
  say("reading the file back with DuckDB and polars");
  const { checkTrainingFile } = await import("./check-file.ts");
  result.check = await checkTrainingFile({ file: path.join(bucket, `training_${pair}.parquet`), warehouse, pair });
}
if (!values.keep) await rm(run, { recursive: true, force: true });
await mkdir(path.join(dir, "results"), { recursive: true });
const resultsFile = path.join(dir, "results", `pair-${new Date().toISOString().replaceAll(":", "-")}.json`);
await writeFile(resultsFile, `${JSON.stringify(result, null, 2)}\n`);
say(`results written to ${resultsFile}`);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exitCode = result.exit === 0 ? 0 : 1;
