// A feature table rebuilt in the warehouse under the same name (corrected values, same date range)
// must not be taken from the parts an earlier attempt staged: part fingerprints cover each table's
// version (DuckDB: a signature of its rows; BigQuery: its last modification time), so a retried run
// extracts exactly the changed table again and reuses every other part. Both backends: the
// embedded DuckDB warehouse, and BigQuery's stand-ins over the same file.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_FEATURES_DATASET as F } from "../../src/constants.ts";
import { DuckDBWarehouse } from "../../src/warehouse/duckdb.ts";
import { startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { onWarehouse } from "../support/job-process.ts";
import { runJob, type JobRun } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../../standins/tiny-warehouse.ts";

const PAIR = "eurusd";
const CHANGED = `agg_${PAIR}`;
const NEW_VALUE = 424242;
let dir: string;

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** The tables whose parts a run extracted itself (LOG_LEVEL=debug logs one line per part). */
function extractedTables(run: JobRun): string[] {
  return [...new Set(run.lines.filter((l) => /^extracted \S+ row groups \d+-\d+ as part /.test(String(l.message))).map((l) => String(l.table)))].sort();
}

function figures(run: JobRun): Record<string, unknown> {
  return run.lines.find((l) => l.stage === "extract" && l.extracted !== undefined)!;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "table-versions-test-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the DuckDB signature", () => {
  it("changes when a value changes, when a NULL becomes a value and back, and when a row is added, not otherwise", async () => {
    const file = path.join(dir, "signature.duckdb");
    await onWarehouse(
      file,
      `CREATE SCHEMA ${q(F)}`,
      `CREATE TABLE ${q(F)}.t AS SELECT to_timestamp(1577923200 + i * 60) AS interval_time, CASE WHEN i = 3 THEN NULL ELSE (i * 1.5)::DOUBLE END AS v FROM range(10) r(i)`,
    );
    const range = { dateFrom: "2020-01-01", dateTo: "2024-12-31" };
    const version = async () => {
      const wh = await DuckDBWarehouse.open(file);
      try {
        return (await wh.tableVersions(F, ["t"], range)).get("t")?.version;
      } finally {
        await wh.close();
      }
    };
    const original = await version();
    expect(original).toMatch(/^rows=10;xor=[0-9a-f]+$/);
    expect(await version()).toBe(original);
    await onWarehouse(file, `UPDATE ${q(F)}.t SET v = 0 WHERE v IS NULL`);
    const filled = await version();
    expect(filled).not.toBe(original);
    await onWarehouse(file, `UPDATE ${q(F)}.t SET v = NULL WHERE v = 0 AND interval_time = to_timestamp(1577923200 + 180)`);
    expect(await version()).toBe(original);
    await onWarehouse(file, `UPDATE ${q(F)}.t SET v = 3.0000001 WHERE v = 3`);
    expect(await version()).not.toBe(original);
    await onWarehouse(file, `UPDATE ${q(F)}.t SET v = 3 WHERE v = 3.0000001`, `INSERT INTO ${q(F)}.t VALUES (to_timestamp(1577923200 + 600), 1)`);
    expect(await version()).toMatch(/^rows=11;/);
    // Rows outside the date range are not read, so they are not signed either.
    await onWarehouse(file, `INSERT INTO ${q(F)}.t VALUES (TIMESTAMPTZ '2019-06-01 00:00:00+00', 7)`);
    expect(await version()).toMatch(/^rows=11;/);
  }, 30_000);
});

describe.each(["local", "gcp"] as const)("BACKEND=%s: a table rebuilt with new values", (backend) => {
  let warehouse: string;
  let bq: StandIns | undefined;
  let firstAggX: number;

  beforeAll(async () => {
    warehouse = path.join(dir, `${backend}.duckdb`);
    firstAggX = (await buildTinyWarehouse({ path: warehouse, pairs: [PAIR] }))[PAIR]!.firstAggX;
    if (backend === "gcp") bq = await startBigQueryStandIns({ warehouse });
  }, 60_000);

  afterAll(async () => {
    await bq?.close();
  });

  function env(extra: Record<string, string> = {}): Record<string, string> {
    const common = {
      TARGET_PAIR: PAIR,
      OUTPUT_URI: path.join(dir, backend, "bucket"),
      WORK_DIR: path.join(dir, backend, "work"),
      MAX_WORKERS: "2",
      ...TINY_VALIDATION_ENV,
    };
    const source: Record<string, string> =
      backend === "local"
        ? { WAREHOUSE: warehouse }
        : {
            BACKEND: "gcp",
            GCP_PROJECT: bq!.project,
            BQ_LOCATION: bq!.location,
            BIGQUERY_ENDPOINT: bq!.bigqueryEndpoint,
            BIGQUERY_STORAGE_ENDPOINT: bq!.storageEndpoint,
          };
    return { ...common, ...source, ...extra };
  }

  it("is extracted again on the retry, alone, and the file holds its new value", async () => {
    // A run stopped by validation keeps its staged parts for the next attempt.
    const first = await runJob(env({ MIN_ROWS: "100000", LOG_LEVEL: "debug" }));
    expect(first.code, first.stdout.slice(-2000)).toBe(1);
    // The feature tables (the target's part is staged apart, before them).
    const tables = extractedTables(first);
    expect(tables).toContain(`${F}.${CHANGED}`);

    // Rebuilt in the warehouse: the first row's x corrected. BigQuery gives the table a new
    // modification time; the stand-in reads the file read-only, so it restarts over the new one.
    await bq?.close();
    await onWarehouse(
      warehouse,
      `UPDATE ${q(F)}.${q(CHANGED)} SET x = ${NEW_VALUE} WHERE interval_time = (SELECT min(interval_time) FROM ${q(F)}.${q(CHANGED)})`,
    );
    if (backend === "gcp") bq = await startBigQueryStandIns({ warehouse, modified: { [`${F}.${CHANGED}`]: Date.now() } });

    const again = await runJob(env({ LOG_LEVEL: "debug" }));
    expect(again.code, again.stdout.slice(-2000)).toBe(0);
    if (bq) {
      // One INFORMATION_SCHEMA.PARTITIONS query per dataset, not a tables.get per table.
      const versionQueries = bq.requests.filter((r) => r.method === "jobs.insert" && /INFORMATION_SCHEMA\.PARTITIONS/.test(r.query ?? ""));
      expect(versionQueries).toHaveLength(2);
    }
    expect(extractedTables(again)).toEqual([`${F}.${CHANGED}`]);
    const f = figures(again);
    expect(f.parts).toBe(tables.length + 1);
    expect(f.reused).toBe(tables.length);

    const training = path.join(dir, backend, "bucket", `training_${PAIR}.parquet`);
    const frame = pl.readParquet(training);
    expect(frame.getColumn("agg_x").get(0)).toBe(NEW_VALUE);
    expect(frame.getColumn("agg_x").get(1)).toBe(firstAggX + 1);

    // The manifest's run record names each table's version.
    const manifest = JSON.parse(await readFile(path.join(dir, backend, "bucket", `training_${PAIR}.manifest.json`), "utf8")) as {
      run: { tables: Array<{ table: string; version: string | null; reusedParts: number }> };
    };
    expect(manifest.run.tables).toHaveLength(tables.length + 1);
    for (const t of manifest.run.tables) expect(t.version, t.table).toMatch(backend === "local" ? /^rows=\d+;xor=[0-9a-f]+$/ : /^modified=\d{4}-\d\d-\d\dT/);
    expect(manifest.run.tables.filter((t) => t.reusedParts === 0).map((t) => t.table)).toEqual([`${F}.${CHANGED}`]);
    expect(existsSync(path.join(dir, backend, "bucket", "_staging"))).toBe(false);
  }, 180_000);
});
