// npm run bench:extract -- [--tables 668] [--rows 20000] [--latency-ms 2000-3000] [--session-latency-ms 500-1500] [--dir bench]
// Stage 1 with BACKEND=gcp against the Google API stand-ins, at the job's default settings
// (EXTRACT_CONCURRENCY default, workers = detected CPUs): every table aligned and staged as a part
// in the stand-in bucket, once by each route: "read" (the default: a Storage Read session on each
// table itself) and "query" (BQ_READ_ROUTE=query: a query job per table, its result read back).
// Each route gets fresh stand-ins in one child process (`npm run standins`) and the stage in
// another, so the CPU figures are the job's alone; the stand-ins' own CPU is reported beside them,
// and the query jobs each route ran are counted from the stand-ins' request log (discovery's
// INFORMATION_SCHEMA jobs apart). --latency-ms is added to every query job, --session-latency-ms
// to every CreateReadSession. The sample warehouse (and a subset for --tables N < 668, spread
// evenly over the tables) is cached under --dir. Ends with one JSON line of figures, `routes.read`
// and `routes.query` side by side, also written to <dir>/results/.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const PAIR = "eurusd";
const ALL_TABLES = 668;

const { values } = parseArgs({
  options: {
    tables: { type: "string", default: String(ALL_TABLES) },
    rows: { type: "string", default: "20000" },
    "latency-ms": { type: "string", default: "2000-3000" },
    "session-latency-ms": { type: "string", default: "500-1500" },
    dir: { type: "string", default: path.join(ROOT, "bench") },
    // Internal: the child process that runs Stage 1.
    "run-stage": { type: "boolean", default: false },
  },
});

/** Child mode: Stage 1 alone, configured by the environment; prints one JSON line of figures. */
async function runStage(): Promise<void> {
  const pino = (await import("pino")).default;
  const { extractStage } = await import("../../stages/extract.ts");
  const { parseConfig, realHostFacts } = await import("../../src/config.ts");
  const { layoutFor } = await import("../../src/layout.ts");
  const { createLogger } = await import("../../src/log.ts");
  const { BigQueryWarehouse } = await import("../../src/warehouse/bigquery.ts");
  const { GcsBucket } = await import("../../src/bucket/gcs.ts");
  const config = parseConfig(process.env, realHostFacts());
  // stdout carries only the result line.
  const log = createLogger({ level: config.logLevel, format: "json", destination: pino.destination({ dest: 2, sync: true }) });
  if (config.backend !== "gcp") throw new Error("bench-extract measures BACKEND=gcp against the stand-ins; set BACKEND=gcp");
  const { gcp } = config;
  const warehouse = new BigQueryWarehouse({ project: gcp.project, location: gcp.location, apiEndpoint: gcp.bigqueryEndpoint, queryTimeoutMs: gcp.queryTimeoutMs, log });
  const bucket = new GcsBucket(config.output.uri, { apiEndpoint: config.gcsEndpoint, projectId: gcp.project });
  const state = { durations: {} };
  const started = performance.now();
  const figures = await extractStage.run({
    config,
    log,
    warehouse,
    bucket,
    layout: layoutFor(config.workDir, config.pair),
    signal: new AbortController().signal,
    now: () => performance.now(),
    state,
  });
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage();
  const usage = process.resourceUsage();
  process.stdout.write(
    `${JSON.stringify({ ...figures, seconds, cpu_user_s: cpu.user / 1e6, cpu_system_s: cpu.system / 1e6, peak_rss_bytes: usage.maxRSS * 1024, workers: config.maxWorkers, workers_source: config.maxWorkersSource, extract_concurrency: config.extractConcurrency })}\n`,
  );
}

if (values["run-stage"]) {
  await runStage();
  process.exit(0);
}

const tables = Number(values.tables);
const rows = Number(values.rows);
const latency = values["latency-ms"];
const sessionLatency = values["session-latency-ms"];
if (!Number.isInteger(tables) || tables < 2 || tables > ALL_TABLES || !Number.isInteger(rows) || rows < 1 || !/^\d+(-\d+)?$/.test(latency) || !/^\d+(-\d+)?$/.test(sessionLatency)) {
  process.stderr.write(`bench:extract: --tables 2..${ALL_TABLES}, --rows N (>0), --latency-ms and --session-latency-ms MS or MIN-MAX\n`);
  process.exit(2);
}
const dir = path.resolve(values.dir);
const say = (line: string) => process.stderr.write(`[bench:extract] ${line}\n`);

/** The sample warehouse at --rows, and for --tables < 668 a copy with an evenly spread subset. */
async function warehouseFile(): Promise<string> {
  const base = path.join(dir, `extract-${PAIR}-${rows}`);
  const full = path.join(base, "warehouse.duckdb");
  if (!existsSync(full)) {
    await mkdir(base, { recursive: true });
    say(`building the sample warehouse (${rows} rows, 668 tables) in ${full}; cached for later runs`);
    const { buildSampleWarehouse } = await import("../../standins/sample/build.ts");
    await buildSampleWarehouse({ path: full, pair: PAIR, rows });
  }
  if (tables === ALL_TABLES) return full;
  const subset = path.join(base, `subset-${tables}.duckdb`);
  if (!existsSync(subset)) {
    say(`copying an evenly spread subset of ${tables - 1} feature tables + the target to ${subset}`);
    const { subsetWarehouse } = await import("../../standins/subset-warehouse.ts");
    await subsetWarehouse({ source: full, out: subset, pair: PAIR, features: tables - 1 });
  }
  return subset;
}

/** Resolves with the stand-ins' environment once they print their last line (OUTPUT_URI). */
function startStandIns(warehouse: string): { child: ChildProcess; env: Promise<Record<string, string>>; stopped: Promise<Record<string, number> | undefined> } {
  const child = spawn(process.execPath, ["scripts/dev/standins.ts", "--", "--warehouse", warehouse, "--latency-ms", latency, "--session-latency-ms", sessionLatency], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  const env = new Promise<Record<string, string>>((resolve, reject) => {
    const vars: Record<string, string> = {};
    createInterface({ input: child.stdout }).on("line", (line) => {
      const m = /^([A-Z_]+)=(.*)$/.exec(line);
      if (!m) return;
      vars[m[1]!] = m[2]!;
      if (m[1] === "OUTPUT_URI") resolve(vars);
    });
    child.once("exit", (code) => reject(new Error(`the stand-ins exited with ${code} before they were ready`)));
  });
  const stopped = new Promise<Record<string, number> | undefined>((resolve) => {
    let figures: Record<string, number> | undefined;
    createInterface({ input: child.stderr }).on("line", (line) => {
      const m = /^\[standins\] stopped: (\{.*\})$/.exec(line);
      if (m) figures = JSON.parse(m[1]!) as Record<string, number>;
      else if (/cannot start|error/i.test(line)) say(`stand-ins: ${line}`);
    });
    child.once("exit", () => resolve(figures));
  });
  return { child, env, stopped };
}

interface StageFigures {
  tables: number;
  parts: number;
  extracted: number;
  stagedBytes?: number;
  retries?: number;
  tableReads?: number;
  queryJobs?: number;
  readStreams?: number;
  estimatedBytesScanned?: number;
  seconds: number;
  cpu_user_s: number;
  cpu_system_s: number;
  peak_rss_bytes: number;
  workers: number;
  workers_source: string;
  extract_concurrency: number;
}

/** Stage 1 in its own process; peak RSS from GNU time when present, progress lines echoed. */
function runStageChild(env: Record<string, string>): Promise<StageFigures & { process_wall_s: number }> {
  const useTime = existsSync("/usr/bin/time");
  const script = path.join(ROOT, "scripts", "bench", "extract.ts");
  const command = useTime ? "/usr/bin/time" : process.execPath;
  const argv = useTime ? ["-f", "__peak_kb=%M", process.execPath, script, "--run-stage"] : [script, "--run-stage"];
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, argv, { cwd: ROOT, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let tail: string[] = [];
    let peakKb: number | undefined;
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    createInterface({ input: child.stderr }).on("line", (line) => {
      const timed = /^__peak_kb=(\d+)$/.exec(line);
      if (timed) return void (peakKb = Number(timed[1]));
      tail = [...tail.slice(-20), line];
      if (!line.startsWith("{")) return;
      const rec = JSON.parse(line) as { message?: string; severity?: string };
      if (/^extracted \d+\/\d+ |^extraction pool|^discovered|^reusing|^\d+ training rows/.test(rec.message ?? "") || rec.severity === "ERROR") say(`  ${rec.message}`);
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const line = stdout.trim().split("\n").filter((l) => l.startsWith("{")).at(-1);
      if (code !== 0 || !line) return reject(new Error(`Stage 1 exited ${code}:\n${tail.join("\n")}`));
      const f = JSON.parse(line) as StageFigures;
      resolve({ ...f, peak_rss_bytes: peakKb !== undefined ? peakKb * 1024 : f.peak_rss_bytes, process_wall_s: (performance.now() - started) / 1000 });
    });
  });
}

/** What one route's run measured (written to the results file as is). */
interface RouteFigures {
  wall_s: number;
  tables_per_min: number;
  cpu_s_per_table: number;
  query_jobs: number | null;
  discovery_query_jobs: number | null;
  read_sessions: number | null;
  read_streams: number;
  estimated_bytes_scanned: number;
  cpu_user_s: number;
  cpu_system_s: number;
  peak_rss_bytes: number;
  process_wall_s: number;
  parts: number;
  staged_bytes: number;
  retries: number;
  standin_cpu_s_per_table: number | null;
  standin_peak_rss_bytes: number | null;
  workers: number;
  workers_source: string;
  extract_concurrency: number;
  tables: number;
}

/** One route's Stage 1 on fresh stand-ins: its figures, and what the stand-ins counted. */
async function benchRoute(route: "read" | "query", warehouse: string): Promise<RouteFigures> {
  const work = path.join(dir, `extract-work-${route}`);
  await rm(work, { recursive: true, force: true });
  say(`[${route}] starting the stand-ins over ${path.relative(ROOT, warehouse)} with ${latency} ms of query latency, ${sessionLatency} ms per read session`);
  const standIns = startStandIns(warehouse);
  try {
    const standInEnv = await standIns.env;
    say(`[${route}] running Stage 1 (BACKEND=gcp${route === "query" ? ", BQ_READ_ROUTE=query" : ""}, default EXTRACT_CONCURRENCY and workers, parts staged in the stand-in bucket)`);
    const stage = await runStageChild({ ...standInEnv, TARGET_PAIR: PAIR, WORK_DIR: work, LOG_LEVEL: "info", LOG_FORMAT: "json", ...(route === "query" ? { BQ_READ_ROUTE: "query" } : {}) });
    standIns.child.kill("SIGTERM");
    const counted = await standIns.stopped;
    const cpu = stage.cpu_user_s + stage.cpu_system_s;
    const standInCpu = counted ? counted.cpu_user_s! + counted.cpu_system_s! : null;
    return {
      wall_s: Number(stage.seconds.toFixed(2)),
      tables_per_min: Number(((stage.tables / stage.seconds) * 60).toFixed(1)),
      cpu_s_per_table: Number((cpu / stage.tables).toFixed(4)),
      // From the stand-ins' request log: jobs that read tables; discovery's INFORMATION_SCHEMA jobs apart.
      query_jobs: counted ? counted.extraction_query_jobs! : null,
      discovery_query_jobs: counted ? counted.query_jobs! - counted.extraction_query_jobs! : null,
      read_sessions: counted?.read_sessions ?? null,
      read_streams: stage.readStreams ?? 0,
      estimated_bytes_scanned: stage.estimatedBytesScanned ?? 0,
      cpu_user_s: Number(stage.cpu_user_s.toFixed(2)),
      cpu_system_s: Number(stage.cpu_system_s.toFixed(2)),
      peak_rss_bytes: stage.peak_rss_bytes,
      process_wall_s: Number(stage.process_wall_s.toFixed(2)),
      parts: stage.parts,
      staged_bytes: stage.stagedBytes ?? 0,
      retries: stage.retries ?? 0,
      standin_cpu_s_per_table: standInCpu === null ? null : Number((standInCpu / stage.tables).toFixed(4)),
      standin_peak_rss_bytes: counted?.peak_rss_bytes ?? null,
      workers: stage.workers,
      workers_source: stage.workers_source,
      extract_concurrency: stage.extract_concurrency,
      tables: stage.tables,
    };
  } finally {
    if (standIns.child.exitCode === null) standIns.child.kill("SIGTERM");
    await rm(work, { recursive: true, force: true });
  }
}

const warehouse = await warehouseFile();
const load = os.loadavg()[0]!;
const routes = { read: await benchRoute("read", warehouse), query: await benchRoute("query", warehouse) };
if (routes.read.query_jobs !== 0) say(`WARNING: the read route ran ${routes.read.query_jobs} extraction query jobs (expected none)`);
const result = {
  tables: routes.read.tables,
  rows,
  latency_ms: latency,
  session_latency_ms: sessionLatency,
  routes,
  cpus: os.availableParallelism(),
  load_avg_1m_before: Number(load.toFixed(2)),
};
await mkdir(path.join(dir, "results"), { recursive: true });
const resultsFile = path.join(dir, "results", `extract-${new Date().toISOString().replaceAll(":", "-")}.json`);
await writeFile(resultsFile, `${JSON.stringify(result, null, 2)}\n`);
for (const [name, r] of Object.entries(routes)) {
  say(`${name}: ${r.tables} tables in ${r.wall_s}s: ${r.tables_per_min} tables/min, ${r.cpu_s_per_table} CPU s/table, ${r.query_jobs} extraction query jobs, ${r.read_sessions} read sessions (stand-ins: ${r.standin_cpu_s_per_table} CPU s/table)`);
}
say(`results written to ${resultsFile}`);
process.stdout.write(`${JSON.stringify(result)}\n`);
