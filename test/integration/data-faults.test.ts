// Data faults in the warehouse: each is a clear failure (exit 1) whose message names the table and
// the fix, and nothing reaches the bucket. Each case is a small warehouse built with one problem.
import { copyFile, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { onWarehouse } from "../support/job-process.ts";
import { runJob } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../../standins/tiny-warehouse.ts";

const PAIR = "eurusd";
const F = "bqx_ml_v3_features_v2";
const T = "bqx_ml_v3_analytics_v2";
let dir: string;
let clean: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "data-faults-test-"));
  clean = path.join(dir, "clean.duckdb");
  await buildTinyWarehouse({ path: clean, pairs: [PAIR] });
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A copy of the clean warehouse with `sql` applied, and the job run on it. */
async function runOnBroken(name: string, sql: string[]) {
  const warehouse = path.join(dir, `${name}.duckdb`);
  await copyFile(clean, warehouse);
  await onWarehouse(warehouse, ...sql);
  const bucket = path.join(dir, name, "bucket");
  const run = await runJob({
    TARGET_PAIR: PAIR,
    WAREHOUSE: warehouse,
    OUTPUT_URI: bucket,
    WORK_DIR: path.join(dir, name, "work"),
    MAX_WORKERS: "2",
    ...TINY_VALIDATION_ENV,
  });
  const failure = run.lines
    .filter((l) => l.severity === "ERROR")
    .map((l) => String(l.message))
    .join("\n");
  // Parts of the good tables may be staged (kept for the next attempt); nothing is published.
  return { run, failure, uploaded: (await readdir(bucket).catch(() => [] as string[])).filter((n) => n.startsWith("training_")) };
}

const cases: ReadonlyArray<[string, string[], RegExp, RegExp]> = [
  [
    "a feature table repeating an interval_time (the row count must not grow)",
    [`INSERT INTO ${F}.agg_eurusd SELECT * FROM ${F}.agg_eurusd ORDER BY interval_time LIMIT 3`],
    /bqx_ml_v3_features_v2\.agg_eurusd repeats 3 interval_time values in the date range; a join on it would silently add rows/,
    /Fix: deduplicate agg_eurusd on interval_time in the warehouse/,
  ],
  [
    "an empty target table",
    [`DELETE FROM ${T}.targets_eurusd`],
    /target table bqx_ml_v3_analytics_v2\.targets_eurusd has no rows with target_bqx45_h15/,
    /Fix: check DATE_FROM\/DATE_TO and that the target table is populated/,
  ],
  [
    "a missing target table",
    // Another pair's target stays, so the dataset itself exists.
    [`CREATE TABLE ${T}.targets_gbpusd AS SELECT * FROM ${T}.targets_eurusd`, `DROP TABLE ${T}.targets_eurusd`],
    /target table bqx_ml_v3_analytics_v2\.targets_eurusd not found/,
    /Fix: create targets_eurusd in bqx_ml_v3_analytics_v2, or set TARGETS_DATASET/,
  ],
  [
    "no feature table discovered",
    [`DROP TABLE ${F}.agg_eurusd`, `DROP TABLE ${F}.mom_bqx_eurusd`, `DROP TABLE ${F}.tri_agg_bqx_eur_usd_gbp`, `DROP TABLE ${F}.var_agg_bqx_eur`],
    /no feature tables for eurusd in bqx_ml_v3_features_v2 \(looked for names containing "eurusd"/,
    /Fix: fix the tables named above in the warehouse, or check TARGET_PAIR, FEATURES_DATASET/,
  ],
  [
    "two columns that would collide after prefixing",
    // eurusd_agg's prefix is "agg", like agg_eurusd's: both would make agg_x.
    [`CREATE TABLE ${F}.eurusd_agg AS SELECT interval_time, x FROM ${F}.agg_eurusd`],
    /column "agg_x" from "eurusd_agg\.x" collides with a column of "agg_eurusd" after prefixing/,
    /Fix: fix the tables named above/,
  ],
  [
    "an interval_time stored as text",
    [`ALTER TABLE ${F}.mom_bqx_eurusd ALTER interval_time TYPE VARCHAR`],
    /bqx_ml_v3_features_v2\.mom_bqx_eurusd\.interval_time has type VARCHAR; expected TIMESTAMP/,
    /Fix: fix the tables named above/,
  ],
  [
    "an interval_time stored as epoch seconds",
    [`ALTER TABLE ${F}.var_agg_bqx_eur ALTER interval_time TYPE BIGINT USING epoch(interval_time)::BIGINT`],
    /bqx_ml_v3_features_v2\.var_agg_bqx_eur\.interval_time has type BIGINT; expected TIMESTAMP/,
    /Fix: fix the tables named above/,
  ],
];

describe("data faults fail the run, naming the table and the fix, with nothing uploaded", () => {
  it.each(cases)(
    "%s",
    async (name, sql, what, fix) => {
      const { run, failure, uploaded } = await runOnBroken(name.replace(/\W+/g, "-"), sql);
      expect(run.code, run.stdout.slice(-2000)).toBe(1);
      expect(failure).toMatch(what);
      expect(failure).toMatch(fix);
      expect(uploaded).toEqual([]);
    },
    60_000,
  );
});
