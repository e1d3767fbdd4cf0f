// Fan-out: one execution of several Cloud Run tasks splits PAIRS between them. Here each task is
// its own process on the embedded backend, all running at once and writing to one bucket, as the
// tasks of one execution do.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pl from "nodejs-polars";
import { readFooterSummary } from "../../src/parquet/index.ts";
import { runJob, type JobRun } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse, type TinyPair } from "../../standins/tiny-warehouse.ts";

const LISTED = ["eurusd", "gbpusd", "usdjpy", "audusd", "nzdusd"];
const TASKS = 3;
/** Task i builds positions i, i+3 of the list. */
const EXPECTED: string[][] = [["eurusd", "audusd"], ["gbpusd", "nzdusd"], ["usdjpy"]];
const JOB = "bqx-ml-pipeline";
const EXECUTION = "bqx-ml-pipeline-fan7q";

let dir: string;
let warehouse: string;
let tiny: Record<string, TinyPair>;
let runs: JobRun[];

const bucket = () => path.join(dir, "bucket");

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "fanout-test-"));
  warehouse = path.join(dir, "warehouse.duckdb");
  tiny = await buildTinyWarehouse({ path: warehouse, pairs: LISTED });
  runs = await Promise.all(
    Array.from({ length: TASKS }, (_, task) =>
      runJob({
        PAIRS: LISTED.join(","),
        CLOUD_RUN_JOB: JOB,
        CLOUD_RUN_EXECUTION: EXECUTION,
        CLOUD_RUN_TASK_INDEX: String(task),
        CLOUD_RUN_TASK_COUNT: String(TASKS),
        CLOUD_RUN_TASK_ATTEMPT: "0",
        WAREHOUSE: warehouse,
        OUTPUT_URI: bucket(),
        WORK_DIR: path.join(dir, "work"),
        MAX_WORKERS: "1",
        ...TINY_VALIDATION_ENV,
      }),
    ),
  );
}, 180_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("PAIRS split across the tasks of one execution", () => {
  it("every task exits 0 and the bucket holds exactly the listed pairs' files", async () => {
    for (const run of runs) expect(run.code, run.stdout.slice(-3000) + run.stderr).toBe(0);
    const files = (await readdir(bucket())).filter((f) => f.endsWith(".parquet")).sort();
    expect(files).toEqual(LISTED.map((p) => `training_${p}.parquet`).sort());
  });

  it("each file holds its own pair's rows and values, as its footer and manifest say", async () => {
    for (const pair of LISTED) {
      const file = path.join(bucket(), `training_${pair}.parquet`);
      const footer = await readFooterSummary(file);
      expect(footer.keyValueMetadata["bqx.pair"]).toBe(pair);
      expect(footer.numRows).toBe(tiny[pair]!.trainingRows);
      expect(footer.columnNames).toHaveLength(tiny[pair]!.columns);
      expect(
        Number(
          pl
            .readParquet(file, { columns: ["agg_x"], nRows: 1 })
            .getColumn("agg_x")
            .get(0),
        ),
      ).toBe(tiny[pair]!.firstAggX);
      const manifest = JSON.parse(await readFile(path.join(bucket(), `training_${pair}.manifest.json`), "utf8"));
      expect(manifest.pair).toBe(pair);
      expect(manifest.query.TARGET_PAIR).toBe(pair);
      expect(manifest.rows).toBe(tiny[pair]!.trainingRows);
      expect(manifest.tables.target.table).toBe(`bqx_ml_v3_analytics_v2.targets_${pair}`);
    }
  });

  it("task i builds the pairs at positions i, i+3, ... in order, and says so", () => {
    runs.forEach((run, task) => {
      const done = run.lines.filter((l) => typeof l.message === "string" && l.message.startsWith("done: ")).map((l) => l.pair);
      expect(done, `task ${task}`).toEqual(EXPECTED[task]);
      expect(run.lines.map((l) => l.message)).toContainEqual(expect.stringMatching(new RegExp(`^task ${task} of ${TASKS} builds `)));
    });
    expect(runs[0]!.lines.at(-1)).toMatchObject({ message: `task 0 of ${TASKS}: built 2 of 2 (eurusd, audusd)`, built: ["eurusd", "audusd"] });
  });

  it("every log line carries job, execution, task index and attempt, and every pipeline line its pair", () => {
    runs.forEach((run, task) => {
      expect(run.lines.length).toBeGreaterThan(10);
      for (const line of run.lines) expect(line).toMatchObject({ job: JOB, execution: EXECUTION, task, attempt: 0 });
      const stageLines = run.lines.filter((l) => typeof l.stage === "string");
      expect(stageLines.length).toBeGreaterThan(0);
      for (const line of stageLines) expect(EXPECTED[task]).toContain(line.pair);
    });
  });

  it("logs the first warehouse request's time since process start, once per task", () => {
    for (const run of runs) {
      const first = run.lines.filter((l) => l.firstRequest !== undefined);
      expect(first).toHaveLength(1);
      expect(first[0]!.startupMs).toEqual(expect.any(Number));
      expect(first[0]!.startupMs as number).toBeGreaterThan(0);
    }
  });

  it("leaves an index that lists every pair, though the tasks rewrote it at the same time", async () => {
    const index = await readFile(path.join(bucket(), "reports", "index.html"), "utf8");
    for (const pair of LISTED) {
      const manifest = JSON.parse(await readFile(path.join(bucket(), `training_${pair}.manifest.json`), "utf8"));
      expect(index).toContain(`<a href="../training_${pair}.report.html">report</a>`);
      expect(index).toContain(manifest.run.createdAt);
      expect(existsSync(path.join(bucket(), `training_${pair}.report.html`))).toBe(true);
    }
    expect(index).not.toContain("unreadable");
  });

  it("leaves no work files behind", () => {
    for (const pair of LISTED) expect(existsSync(path.join(dir, "work", pair))).toBe(false);
  });
});

describe("a task of an execution that lists too few pairs", () => {
  it("exits 2 before any work, naming the task count and the fix", async () => {
    const run = await runJob({
      PAIRS: "eurusd gbpusd",
      CLOUD_RUN_TASK_INDEX: "2",
      CLOUD_RUN_TASK_COUNT: "3",
      WAREHOUSE: warehouse,
      OUTPUT_URI: path.join(dir, "b2"),
      WORK_DIR: path.join(dir, "w2"),
    });
    expect(run.code).toBe(2);
    expect(run.stdout).toBe("");
    expect(JSON.parse(run.stderr).problems).toEqual([expect.stringMatching(/^CLOUD_RUN_TASK_COUNT: .*--tasks 2 or fewer$/)]);
    expect(existsSync(path.join(dir, "b2"))).toBe(false);
  });
});
