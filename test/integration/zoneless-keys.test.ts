// A warehouse whose interval_time columns carry no time zone (DuckDB TIMESTAMP, which BigQuery
// shows as DATETIME): the type most DuckDB users create. Discovery reads those keys as UTC, says
// so once, records the tables in the manifest, and both backends build the same file, which the
// independent DuckDB check (scripts/bench/check-file.ts) accepts.
import { copyFile, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkTrainingFile } from "../../scripts/bench/check-file.ts";
import type { SliceBounds, TableQuery, GcpTaskSettings } from "../../src/warehouse/port.ts";
import { closeWorkerClients } from "../../src/warehouse/bigquery.ts";
import { readBigQueryRows } from "../../src/warehouse/bigquery-extract.ts";
import { gcpStandInEnv, startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { varchar } from "../../standins/duckdb-text.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { buildSmallSample, sha256 } from "../support/job-process.ts";
import { runJob, type JobRun } from "../support/run-job.ts";

const PAIR = "eurusd";
const FEATURES = 12;
const OUTPUT = "bqx-test-output";
const TRAINING = `training_${PAIR}.parquet`;
const q = (name: string) => `"${name.replaceAll('"', '""')}"`;

let dir: string;
let utcWarehouse: string;
let naiveWarehouse: string;
/** Tables whose key was turned into a zone-less TIMESTAMP; two features keep TIMESTAMPTZ. */
let zoneless: string[];

const zonelessWarnings = (run: JobRun) => run.lines.filter((l) => / has no time zone /.test(String(l.message)));

function localEnv(warehouse: string, name: string): Record<string, string> {
  return {
    TARGET_PAIR: PAIR,
    WAREHOUSE: warehouse,
    OUTPUT_URI: path.join(dir, name, "bucket"),
    WORK_DIR: path.join(dir, name, "work"),
    MIN_ROWS: "100",
    MIN_COLUMNS: "100",
    MAX_WORKERS: "2",
  };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "zoneless-keys-test-"));
  utcWarehouse = path.join(dir, "utc.duckdb");
  naiveWarehouse = path.join(dir, "naive.duckdb");
  await buildSmallSample(utcWarehouse, PAIR, 300, FEATURES);
  await copyFile(utcWarehouse, naiveWarehouse);
  const instance = await DuckDBInstance.create(naiveWarehouse);
  const c = await instance.connect();
  try {
    // With the session in UTC, the zone-less values are the same instants written without a zone.
    await c.run("SET TimeZone = 'UTC'");
    const keyed = (
      await c.runAndReadAll(
        "SELECT table_schema, table_name FROM information_schema.columns WHERE column_name = 'interval_time' ORDER BY table_schema, table_name",
      )
    ).getRowsJS();
    const names = keyed.map(([schema, table]) => `${varchar(schema)}.${varchar(table)}`);
    zoneless = names.slice(0, names.length - 2);
    for (const name of zoneless) {
      const [schema, table] = name.split(".");
      await c.run(`ALTER TABLE ${q(schema!)}.${q(table!)} ALTER interval_time SET DATA TYPE TIMESTAMP`);
    }
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("keys without a time zone", () => {
  let naiveFile: string;

  it("are read as UTC on the embedded backend, said once, recorded in the manifest, and give the same rows as UTC keys", async () => {
    expect(zoneless).toContain(`bqx_ml_v3_analytics_v2.targets_${PAIR}`);
    const [utc, naive] = [await runJob(localEnv(utcWarehouse, "utc")), await runJob(localEnv(naiveWarehouse, "naive"))];
    expect(utc.code, utc.stdout.slice(-2000)).toBe(0);
    expect(naive.code, naive.stdout.slice(-2000)).toBe(0);
    expect(zonelessWarnings(utc)).toEqual([]);
    const warned = zonelessWarnings(naive);
    expect(warned).toHaveLength(1);
    expect(warned[0]!.message).toMatch(
      new RegExp(
        `^interval_time has no time zone \\(TIMESTAMP\\) in ${zoneless.length} of ${FEATURES + 1} tables .*: its values are read as UTC; store it as TIMESTAMP WITH TIME ZONE`,
      ),
    );

    naiveFile = path.join(dir, "naive", "bucket", TRAINING);
    const manifest = JSON.parse(await readFile(path.join(dir, "naive", "bucket", `training_${PAIR}.manifest.json`), "utf8"));
    expect([...manifest.tables.zonelessKeys].sort()).toEqual([...zoneless].sort());
    const utcManifest = JSON.parse(await readFile(path.join(dir, "utc", "bucket", `training_${PAIR}.manifest.json`), "utf8"));
    expect(utcManifest.tables.zonelessKeys).toEqual([]);

    // Same rows and values as the file built from the UTC keys.
    const expected = pl.readParquet(path.join(dir, "utc", "bucket", TRAINING));
    const actual = pl.readParquet(naiveFile);
    expect(actual.columns).toEqual(expected.columns);
    expect(actual.dtypes.map(String)).toEqual(expected.dtypes.map(String));
    expect(actual.height).toBe(expected.height);
    expect(expected.columns.filter((c) => !expected.getColumn(c).seriesEqual(actual.getColumn(c), true))).toEqual([]);

    // The independent check against the zone-less warehouse itself.
    const check = await checkTrainingFile({ file: naiveFile, warehouse: naiveWarehouse, pair: PAIR });
    expect(check.mismatches).toEqual([]);
    expect(check).toMatchObject({ ok: true, keyUnique: true, keyStrictlyIncreasing: true });
    expect(check.rows).toBe(check.targetRows);
    expect(check.sampledCells).toBeGreaterThan(0);
  }, 120_000);

  it("are read as UTC through BigQuery too (DATETIME there): the same file as the embedded backend's", async () => {
    let bq: StandIns | undefined;
    let gcs: GcsStandIn | undefined;
    try {
      bq = await startBigQueryStandIns({ warehouse: naiveWarehouse, seed: 3 });
      gcs = await startGcsStandIn({ buckets: [OUTPUT] });
      const run = await runJob({
        TARGET_PAIR: PAIR,
        ...gcpStandInEnv(bq, gcs.endpoint),
        OUTPUT_URI: `gs://${OUTPUT}/naive`,
        WORK_DIR: path.join(dir, "gcp", "work"),
        MIN_ROWS: "100",
        MIN_COLUMNS: "100",
        MAX_WORKERS: "2",
        // Slices, so the key bounds are compared on the zone-less column too.
        MEMORY_BUDGET: "64MiB",
      });
      expect(run.code, run.stdout.slice(-3000)).toBe(0);
      const warned = zonelessWarnings(run);
      expect(warned).toHaveLength(1);
      expect(warned[0]!.message).toMatch(
        /^interval_time has no time zone \(DATETIME\) in .*: its values are read as UTC; store it as TIMESTAMP to make that explicit$/,
      );
      const file = path.join(dir, "gcp.parquet");
      const { writeFile } = await import("node:fs/promises");
      await writeFile(file, await gcs.readObject(OUTPUT, `naive/${TRAINING}`));
      expect(await sha256(file)).toBe(await sha256(naiveFile));

      // A slice of a table is bounded by UTC TIMESTAMP keys: BigQuery refuses comparing those
      // with the DATETIME column itself, so the bounds go on TIMESTAMP(interval_time).
      const table = zoneless.find((t) => t.startsWith("bqx_ml_v3_features_v2."))!.split(".")[1]!;
      const query: TableQuery = {
        dataset: "bqx_ml_v3_features_v2",
        table,
        columns: [],
        dateFrom: "2020-01-01",
        dateTo: "2024-12-31",
        rowLimit: undefined,
        notNullColumn: undefined,
        zonelessKey: true,
      };
      const keys = [...pl.readParquet(naiveFile).getColumn("interval_time").cast(pl.Int64)].map((k) => BigInt(k as number | bigint));
      const slice: SliceBounds = { firstRowGroup: 0, endRowGroup: 1, firstRow: 100, endRow: 200, afterKey: keys[99], throughKey: keys[199] };
      const settings: GcpTaskSettings = {
        project: bq.project,
        location: bq.location,
        bigqueryEndpoint: bq.bigqueryEndpoint,
        storageReadEndpoint: bq.storageEndpoint,
        queryTimeoutMs: 20_000,
      };
      const got = await readBigQueryRows(settings, query, slice);
      const keyColumn = got.frame.getColumn("interval_time");
      expect(String(keyColumn.dtype)).toBe(String(pl.Datetime("us", "UTC")));
      const read = [...keyColumn.cast(pl.Int64)].map((k) => BigInt(k as number | bigint)).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      // Every key the table has in (afterKey, throughKey]; the target's keys there are a subset of them.
      expect(read.length).toBeGreaterThan(0);
      expect(read.every((k) => k > keys[99]! && k <= keys[199]!)).toBe(true);
      expect(keys.slice(100, 200).every((k) => read.includes(k))).toBe(true);
    } finally {
      await closeWorkerClients();
      await bq?.close();
      await gcs?.close();
    }
  }, 120_000);
});
