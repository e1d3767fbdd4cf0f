// PLAN_ONLY=true, the real entrypoint as a child process: each selected pair's plan (discovery,
// the permission checks, the memory plan, the disk WORK_DIR needs, the bytes the reads scan and
// their price) as one JSON line per pair and a table, with nothing read and nothing written. On the
// embedded backend over a small warehouse, and with BACKEND=gcp against the stand-ins, whose
// counters show no table data left them: no ReadRows, no query results, no query job but
// discovery's, one read session created (the run's read-session check) and never read.
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PAIRS, TARGET_COLUMNS } from "../../src/constants.ts";
import type { PairPlan } from "../../src/plan/report.ts";
import { gcpStandInEnv, startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { runJob, type JobRun } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse, type TinyPair } from "../../standins/tiny-warehouse.ts";

const SAMPLE_PAIRS = ["eurusd", "gbpusd"];
const OUTPUT = "bqx-plan-output";
let dir: string;
let warehouse: string;
let tiny: Record<string, TinyPair>;
let bq: StandIns;
let gcs: GcsStandIn;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "plan-only-test-"));
  warehouse = path.join(dir, "warehouse.duckdb");
  tiny = await buildTinyWarehouse({ path: warehouse, pairs: SAMPLE_PAIRS });
  bq = await startBigQueryStandIns({ warehouse });
  gcs = await startGcsStandIn({ buckets: [OUTPUT] });
}, 60_000);

afterAll(async () => {
  await bq?.close();
  await gcs?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Every file under `root`, recursively ([] when it does not exist). */
function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile())
    .map((d) => path.join(d.parentPath, d.name));
}

/** The one line per pair: its message starts with `plan: ` and its figures are in `plan`. */
function plans(run: JobRun): PairPlan[] {
  return run.lines.filter((l) => String(l.message).startsWith("plan: ") && typeof l.plan === "object").map((l) => l.plan as PairPlan);
}

function localEnv(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PLAN_ONLY: "true",
    WAREHOUSE: warehouse,
    OUTPUT_URI: path.join(dir, name, "bucket"),
    WORK_DIR: path.join(dir, name, "work"),
    MAX_WORKERS: "2",
    ...TINY_VALIDATION_ENV,
    ...extra,
  };
}

describe("PLAN_ONLY=true on the embedded backend", () => {
  it("exits 0 with one JSON line of figures for the pair and a table, having written nothing to the bucket or WORK_DIR", async () => {
    const run = await runJob(localEnv("one", { TARGET_PAIR: "eurusd" }));
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const [plan, ...more] = plans(run);
    expect(more).toEqual([]);
    expect(plan).toMatchObject({
      pair: "eurusd",
      backend: "local",
      ok: true,
      tables: 5, // the target, agg_, mom_bqx_, tri_ and var_ (mkt_summary has no key and is skipped)
      skippedTables: 1,
      columns: tiny.eurusd!.columns,
      rowsEstimate: tiny.eurusd!.rows,
      checks: { datasets: "ok", output: "ok", readSessions: "not needed" },
      scan: { route: "local", measured: false, dryRuns: 0, upperBoundBytes: null },
      cost: { usd: 0 },
    });
    // The estimate: each table's rows x the columns read (key included) x 8 bytes.
    const longest = Math.max(...Object.values(tiny).map((t) => t.rows));
    const rows = tiny.eurusd!.rows;
    // (agg_: key, x, y; its `pair` column is not a feature. mom_bqx_: every other minute.)
    const expected = 8 * (rows * (1 + TARGET_COLUMNS.length) + rows * 3 + (rows / 2) * 2 + longest * 3 + longest * 2);
    expect(plan!.scan!.bytes).toBe(expected);
    expect(plan!.memory).toMatchObject({ workers: 2, tablesInFlight: 2, fits: true });
    expect(plan!.memory!.neededBytes).toBeLessThanOrEqual(plan!.memory!.limitBytes);
    expect(plan!.workDir).toMatchObject({ path: path.join(dir, "one", "work") });
    expect(plan!.workDir!.needBytes).toBeGreaterThanOrEqual(plan!.memory!.budgetBytes);
    // The table for a person, and no version signatures (they read every row).
    const table = run.lines.find((l) => String(l.message).startsWith("plan of 1 pair"));
    expect(String(table?.message)).toMatch(/pair\s+tables\s+columns\s+rows\s+memory need \/ limit\s+WORK_DIR need\s+scan\s+at most\s+USD\s+result/);
    expect(String(table?.message)).toMatch(/\neurusd\s+5\s+/);
    expect(run.stdout).not.toMatch(/read the versions of/);
    // Nothing in the bucket (checkWritable's probe is gone) and nothing in WORK_DIR.
    expect(filesUnder(path.join(dir, "one", "bucket"))).toEqual([]);
    expect(filesUnder(path.join(dir, "one", "work"))).toEqual([]);
    expect(run.stdout).not.toMatch(/stage extract: started/);
  }, 60_000);

  it("with PAIRS=all plans all 28 pairs in one task, names each pair the warehouse lacks, and exits 1 after the last", async () => {
    const run = await runJob(localEnv("all", { PAIRS: "all" }));
    expect(run.code, run.stdout + run.stderr).toBe(1);
    const got = plans(run);
    expect(got.map((p) => p.pair)).toEqual([...PAIRS]);
    expect(got.filter((p) => p.ok).map((p) => p.pair)).toEqual(SAMPLE_PAIRS);
    for (const p of got.filter((x) => !x.ok)) {
      expect(p.problem!.message).toMatch(new RegExp(`targets_${p.pair}`));
      expect(p.tables).toBeNull();
    }
    const last = run.lines.at(-1)!;
    expect(String(last.message)).toMatch(/^the run would be refused for 26 of 28 pairs: /);
    expect(filesUnder(path.join(dir, "all", "bucket"))).toEqual([]);
  }, 60_000);

  it("with PAIRS listing the sample's pairs exits 0, one line each and a total in the table", async () => {
    const run = await runJob(localEnv("two", { PAIRS: SAMPLE_PAIRS.join(",") }));
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(plans(run).map((p) => [p.pair, p.ok])).toEqual(SAMPLE_PAIRS.map((p) => [p, true]));
    expect(String(run.lines.find((l) => String(l.message).startsWith("plan of 2 pairs"))?.message)).toMatch(/\ntotal\s.*2 of 2 ok/);
  }, 60_000);

  it("refuses a memory plan that cannot fit with the run's own message and fix, exit 1, before anything is read", async () => {
    const env = localEnv("memory", { TARGET_PAIR: "eurusd", MEMORY_BUDGET: "4096GiB" });
    const run = await runJob(env);
    expect(run.code, run.stdout + run.stderr).toBe(1);
    const [plan] = plans(run);
    expect(plan).toMatchObject({ ok: false, problem: { reason: "memory-plan" }, memory: { fits: false } });
    expect(plan!.problem!.message).toMatch(/^memory plan does not fit: .* but the limit is .* Fix: .*raise the job's memory \(--memory\)/);
    const line = run.lines.find((l) => l.plan);
    expect(line).toMatchObject({ severity: "ERROR", reason: "memory-plan" });
    // The run itself refuses with the same words, before extracting anything.
    const { PLAN_ONLY: _, ...runEnv } = env;
    const real = await runJob({ ...runEnv, OUTPUT_URI: path.join(dir, "memory-run", "bucket") });
    expect(real.code).toBe(1);
    const first = plan!.problem!.message.split("\n")[0]!;
    expect(real.lines.some((l) => l.reason === "memory-plan" && String(l.message).includes(first))).toBe(true);
    expect(real.stdout).not.toMatch(/extraction pool:/);
    expect(filesUnder(path.join(dir, "memory", "bucket"))).toEqual([]);
  }, 60_000);

  it("refuses PLAN_ONLY with several Cloud Run tasks (exit 2): one task plans every pair", async () => {
    const run = await runJob(localEnv("tasks", { PAIRS: "all", CLOUD_RUN_TASK_COUNT: "4", CLOUD_RUN_TASK_INDEX: "0" }));
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/CLOUD_RUN_TASK_COUNT: expected 1 with PLAN_ONLY=true/);
  }, 30_000);
});

describe("PLAN_ONLY=true with BACKEND=gcp against the stand-ins", () => {
  it("exits 0 with the dry runs' bytes, reading no table data: no ReadRows, no query results, no query job but discovery's", async () => {
    const before = bq.requests.length;
    const served = { ...bq.served };
    const run = await runJob({
      PLAN_ONLY: "true",
      TARGET_PAIR: "eurusd",
      ...gcpStandInEnv(bq, gcs.endpoint),
      OUTPUT_URI: `gs://${OUTPUT}/plan`,
      WORK_DIR: path.join(dir, "gcp", "work"),
      MAX_WORKERS: "2",
      ...TINY_VALIDATION_ENV,
    });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const [plan, ...more] = plans(run);
    expect(more).toEqual([]);
    const requests = bq.requests.slice(before);
    const dryRuns = requests.filter((r) => r.method === "jobs.insert" && r.dryRun);
    // One dry run per table, each of the extraction query; their bytes are the plan's.
    expect(dryRuns).toHaveLength(5);
    expect(dryRuns.every((r) => r.status === 200 && /DATE\(`interval_time`\) BETWEEN @date_from AND @date_to/.test(r.query ?? ""))).toBe(true);
    const standInBytes = dryRuns.reduce((n, r) => n + (r.bytesProcessed ?? 0), 0);
    expect(plan).toMatchObject({
      pair: "eurusd",
      backend: "gcp",
      ok: true,
      tables: 5,
      rowsEstimate: tiny.eurusd!.rows,
      checks: { datasets: "ok", output: "ok", readSessions: "ok" },
      scan: { route: "table", bytes: standInBytes, measured: true, dryRuns: 5 },
    });
    // The target: every row of its key and 49 targets, 8 bytes each (the stand-in's widths).
    const targetRun = dryRuns.find((r) => /targets_eurusd/.test(r.query ?? ""));
    expect(targetRun?.bytesProcessed).toBe(tiny.eurusd!.rows * (1 + TARGET_COLUMNS.length) * 8);
    // The upper bound: every column of every table, from INFORMATION_SCHEMA.PARTITIONS.
    expect(plan!.scan!.upperBoundBytes).toBeGreaterThanOrEqual(standInBytes);
    expect(plan!.cost!.usd).toBeCloseTo((standInBytes / 1024 ** 4) * 1.1, 12);
    // No table data left the stand-ins.
    expect(bq.served.tableRows - served.tableRows).toBe(0);
    expect(bq.served.tableBytes - served.tableBytes).toBe(0);
    expect(requests.filter((r) => r.method === "ReadRows")).toEqual([]);
    // Query jobs: discovery's INFORMATION_SCHEMA ones only, besides the dry runs.
    const jobs = requests.filter((r) => r.method === "jobs.insert" && !r.dryRun);
    expect(jobs.length).toBeGreaterThan(0);
    expect(jobs.every((r) => /INFORMATION_SCHEMA\.(TABLES|COLUMNS|PARTITIONS)/.test(r.query ?? ""))).toBe(true);
    // The run's read-session check: one session, on the target, never read.
    expect(requests.filter((r) => r.method === "CreateReadSession").map((r) => [r.table, r.status])).toEqual([
      [`projects/${bq.project}/datasets/bqx_ml_v3_analytics_v2/tables/targets_eurusd`, "OK"],
    ]);
    // Nothing in the bucket under the prefix (the write probe is deleted).
    expect(gcs.listObjects(OUTPUT, "plan/")).toEqual([]);
    expect(filesUnder(path.join(dir, "gcp", "work"))).toEqual([]);
  }, 60_000);

  it("names roles/bigquery.readSessionUser and exits 1 when read sessions are denied, as the run would", async () => {
    bq.faults.readSessionDenied = true;
    try {
      const run = await runJob({
        PLAN_ONLY: "true",
        TARGET_PAIR: "eurusd",
        ...gcpStandInEnv(bq, gcs.endpoint),
        OUTPUT_URI: `gs://${OUTPUT}/denied`,
        MAX_WORKERS: "2",
      });
      expect(run.code).toBe(1);
      const [plan] = plans(run);
      expect(plan).toMatchObject({ ok: false, checks: { readSessions: "failed" } });
      expect(plan!.problem!.fix).toMatch(new RegExp(`grant roles/bigquery\\.readSessionUser on project ${bq.project}`));
      // The other figures are still there.
      expect(plan!.scan?.measured).toBe(true);
    } finally {
      bq.faults.readSessionDenied = false;
    }
  }, 60_000);
});
