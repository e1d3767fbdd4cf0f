// The BigQuery adapter driven through the real client libraries (@google-cloud/bigquery over
// REST, @google-cloud/bigquery-storage's BigQueryReadClient over gRPC) against local stand-ins
// that run the SQL on DuckDB. Its checkpoints are compared, value by value, with the DuckDB
// adapter's for the same task on the same warehouse file.
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { BigQuery } from "@google-cloud/bigquery";
import { DuckDBInstance } from "@duckdb/node-api";
import pl from "nodejs-polars";
import { Piscina } from "piscina";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TARGET_NOT_NULL_COLUMN, planTables, type Discovery } from "../../src/discovery.ts";
import { JobError } from "../../src/errors.ts";
import type { WorkerFailure } from "../../src/extract/worker.ts";
import { STANDIN_ACCESS_TOKEN, authClientForEndpoint } from "../../src/gcp/auth.ts";
import { readFooterSummary } from "../../src/parquet/footer.ts";
import { buildSampleWarehouse } from "../../src/sample/build.ts";
import { BigQueryWarehouse, closeWorkerClients } from "../../src/warehouse/bigquery.ts";
import { extractWithBigQuery } from "../../src/warehouse/bigquery-extract.ts";
import { CHECKPOINT_ROW_GROUP_ROWS, DuckDBWarehouse, FINGERPRINT_KEY, extractWithDuckDB } from "../../src/warehouse/duckdb.ts";
import type { ColumnMapping, ExtractResult, ExtractTask, GcpTaskSettings, TableInfo } from "../../src/warehouse/port.ts";
import { startBigQueryStandIns, type StandIns } from "../support/bigquery-standin.ts";

const PAIR = "eurusd";
const ROWS = 300;
const F = "bqx_ml_v3_features_v2";
const T = "bqx_ml_v3_analytics_v2";
const LAB = "lab";
const FAST_RETRY = { attempts: 5, baseDelayMs: 20, maxDelayMs: 200 };
/** Every extra-table key has a sub-millisecond part, so a millisecond round trip would show. */
const BASE_US = 1_577_836_800_000_000n; // 2020-01-01T00:00:00Z

let dir: string;
let sample: string;
let lab: string;
let standIns: StandIns;
let labStandIns: StandIns;
let discovery: Discovery;
let duckTables: Map<string, TableInfo[]>;

async function buildLabWarehouse(file: string): Promise<void> {
  const instance = await DuckDBInstance.create(file);
  const c = await instance.connect();
  const key = (i: string) => `make_timestamp(${BASE_US}::BIGINT + ${i} * 60000000 + ${i} % 997)::TIMESTAMPTZ`;
  try {
    await c.run("SET TimeZone = 'UTC'");
    await c.run(`CREATE SCHEMA ${LAB}`);
    await c.run(`CREATE TABLE ${LAB}.big_ints AS SELECT ${key("i")} AS interval_time,
      CASE WHEN i % 7 = 3 THEN NULL ELSE (4611686018427387904::BIGINT + i * 1000003) * (CASE WHEN i % 2 = 0 THEN 1 ELSE -1 END) END AS big,
      CASE WHEN i % 5 = 0 THEN NULL ELSE i * 0.1 + pi() END AS f,
      CASE WHEN i % 11 = 0 THEN NULL ELSE 'row-' || i END AS note
      FROM range(200) r(i)`);
    await c.run(`CREATE TABLE ${LAB}.many_rows AS SELECT ${key("i")} AS interval_time,
      CASE WHEN i % 13 = 0 THEN NULL ELSE sqrt(i) - 17.25 END AS x, i * 3 AS n FROM range(25000) r(i)`);
    await c.run(`CREATE TABLE ${LAB}.dup_keys AS SELECT ${key("CASE WHEN i IN (10, 11, 40) THEN i - 1 ELSE i END")} AS interval_time, (i * 1.5)::DOUBLE AS x FROM range(100) r(i)`);
    await c.run(`CREATE TABLE ${LAB}.null_keys AS SELECT CASE WHEN i IN (5, 50) THEN NULL ELSE ${key("i")} END AS interval_time, (i * 1.5)::DOUBLE AS x FROM range(100) r(i)`);
    await c.run("CHECKPOINT");
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "bigquery-warehouse-test-"));
  sample = path.join(dir, "sample.duckdb");
  lab = path.join(dir, "handmade.duckdb");
  await Promise.all([buildSampleWarehouse({ path: sample, pair: PAIR, rows: ROWS }), buildLabWarehouse(lab)]);
  // Small Arrow batches and REST pages, so a few hundred rows cross batch and page boundaries.
  standIns = await startBigQueryStandIns({ warehouse: sample, batchRows: 64, pageRows: 5_000, seed: 7 });
  labStandIns = await startBigQueryStandIns({ warehouse: lab, batchRows: 4_096, project: "bqx-lab" });
  const duck = await DuckDBWarehouse.open(sample);
  try {
    duckTables = new Map([[F, await duck.listTables(F)], [T, await duck.listTables(T)]]);
  } finally {
    await duck.close();
  }
  discovery = planTables(PAIR, { dataset: F, tables: duckTables.get(F) ?? [] }, { dataset: T, tables: duckTables.get(T) ?? [] });
}, 600_000);

afterEach(() => {
  for (const s of [standIns, labStandIns]) {
    Object.assign(s.faults, { restErrors: [], restErrorRate: 0, jobFailures: [], grpcErrors: [], readRowsDrops: [], readSessionDenied: false, latencyMs: 0 });
    s.faults.accessDeniedDatasets.clear();
    s.faults.missingTables.clear();
    s.faults.hangingTables.clear();
  }
});

afterAll(async () => {
  await closeWorkerClients();
  await standIns?.close();
  await labStandIns?.close();
  await rm(dir, { recursive: true, force: true });
});

function settings(s: StandIns, extra: Partial<GcpTaskSettings> = {}): GcpTaskSettings {
  return { project: s.project, bigqueryEndpoint: s.bigqueryEndpoint, storageReadEndpoint: s.storageEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY, ...extra };
}

function task(s: StandIns, warehouse: string, dataset: string, table: string, columns: ColumnMapping[], extra: Partial<ExtractTask> = {}): ExtractTask {
  return {
    backend: "gcp",
    warehouse,
    gcp: settings(s),
    dataset,
    table,
    columns,
    dateFrom: "2020-01-01",
    dateTo: "2024-12-31",
    rowLimit: undefined,
    notNullColumn: undefined,
    checkpointPath: path.join(dir, `${dataset}.${table}.${Math.random().toString(36).slice(2)}.parquet`),
    fingerprint: `fp-${dataset}-${table}`,
    ...extra,
  };
}

function plannedTask(table: string, extra: Partial<ExtractTask> = {}): ExtractTask {
  const planned = table === discovery.target.table ? discovery.target : discovery.features.find((t) => t.table === table);
  if (!planned) throw new Error(`${table} is not planned`);
  const notNull = planned.role === "target" ? { notNullColumn: TARGET_NOT_NULL_COLUMN } : {};
  return task(standIns, sample, planned.dataset, planned.table, planned.columns, { ...notNull, ...extra });
}

function labTask(table: string, columns: string[], extra: Partial<ExtractTask> = {}): ExtractTask {
  return task(labStandIns, lab, LAB, table, columns.map((c) => ({ source: c, target: `${table}_${c}` })), { gcp: settings(labStandIns), ...extra });
}

/** The DuckDB adapter's checkpoint for the same task, next to it. */
async function duckCheckpoint(t: ExtractTask): Promise<{ path: string; rows: number }> {
  const local = { ...t, backend: "local" as const, gcp: undefined, checkpointPath: t.checkpointPath.replace(/\.parquet$/, ".duckdb.parquet") };
  const { rows } = await extractWithDuckDB(local);
  return { path: local.checkpointPath, rows };
}

/** Column values that compare exactly (64-bit integers and timestamps as decimal strings). */
function exactValues(df: pl.DataFrame, name: string): unknown[] {
  const s = df.getColumn(name);
  if (s.dtype.equals(pl.Int64)) return s.cast(pl.Utf8).toArray();
  if (s.dtype.equals(pl.Datetime("us", "UTC"))) return s.cast(pl.Int64).cast(pl.Utf8).toArray();
  return s.toArray();
}

async function expectSameCheckpoint(got: string, expected: string): Promise<void> {
  const [a, b] = [pl.readParquet(got), pl.readParquet(expected)];
  expect(a.columns).toEqual(b.columns);
  expect(a.dtypes.map(String)).toEqual(b.dtypes.map(String));
  expect(a.height).toBe(b.height);
  for (const name of b.columns) expect(exactValues(a, name), name).toEqual(exactValues(b, name));
  const [fa, fb] = [await readFooterSummary(got), await readFooterSummary(expected)];
  expect(fa.numRows).toBe(fb.numRows);
  expect(fa.keyValueMetadata[FINGERPRINT_KEY]).toBe(fb.keyValueMetadata[FINGERPRINT_KEY]);
  expect(fa.keyValueMetadata["bqx.table"]).toBe(fb.keyValueMetadata["bqx.table"]);
  expect([...fa.nullCounts]).toEqual([...fb.nullCounts]);
  expect(fa.rowGroups.every((g) => g.numRows <= CHECKPOINT_ROW_GROUP_ROWS)).toBe(true);
}

async function leftovers(): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.includes(".tmp-"));
}

async function rejection(p: Promise<unknown>): Promise<JobError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(JobError);
  return err as JobError;
}

const DUCK_TO_BIGQUERY: Record<string, string> = { "TIMESTAMP WITH TIME ZONE": "TIMESTAMP", DOUBLE: "FLOAT64", VARCHAR: "STRING", BIGINT: "INT64" };

describe("BigQueryWarehouse discovery", () => {
  it("lists the same tables and columns as the DuckDB adapter, with one TABLES and one COLUMNS query per dataset", async () => {
    const bq = new BigQueryWarehouse({ project: standIns.project, apiEndpoint: standIns.bigqueryEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY });
    const first = standIns.requests.length;
    await bq.preflight([F, T]);
    for (const dataset of [F, T]) {
      const got = await bq.listTables(dataset);
      const expected = duckTables.get(dataset) ?? [];
      expect(got.map((t) => t.name)).toEqual(expected.map((t) => t.name));
      for (const [i, table] of got.entries()) {
        const want = expected[i]!;
        expect(table.dataset).toBe(dataset);
        expect(table.columns.map((c) => c.name)).toEqual(want.columns.map((c) => c.name));
        expect(table.columns.map((c) => c.type)).toEqual(want.columns.map((c) => DUCK_TO_BIGQUERY[c.type] ?? c.type));
      }
    }
    const inserts = standIns.requests.slice(first).filter((r) => r.method === "jobs.insert");
    for (const dataset of [F, T]) {
      for (const view of ["TABLES", "COLUMNS"]) {
        expect(inserts.filter((r) => r.query?.includes(`${dataset}\`.INFORMATION_SCHEMA.${view}`)), `${dataset} ${view}`).toHaveLength(1);
      }
    }
    expect(inserts).toHaveLength(4);
    // 17,000 feature columns do not fit one 5,000-row page: the listing followed pageTokens.
    expect(standIns.requests.slice(first).filter((r) => r.method === "jobs.getQueryResults").length).toBeGreaterThan(8);
  });

  it("retries a 503 on a discovery query and logs the retry", async () => {
    const warnings: string[] = [];
    const log = { warn: (_obj: object, msg: string) => void warnings.push(msg) } as unknown as NonNullable<ConstructorParameters<typeof BigQueryWarehouse>[0]["log"]>;
    const bq = new BigQueryWarehouse({ project: standIns.project, apiEndpoint: standIns.bigqueryEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY, log });
    standIns.faults.restErrors.push({ method: "jobs.insert", status: 503, reason: "backendError", count: 1 });
    const tables = await bq.listTables(T);
    expect(tables.map((t) => t.name)).toEqual((duckTables.get(T) ?? []).map((t) => t.name));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^retrying jobs\.insert in \d+ ms after: Injected backendError$/);
  });

  it("fails preflight when a dataset lives in another location than BQ_LOCATION", async () => {
    const bq = new BigQueryWarehouse({ project: standIns.project, location: "EU", apiEndpoint: standIns.bigqueryEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY });
    const err = await rejection(bq.preflight([F]));
    expect(err.reason).toBe("bigquery-location-mismatch");
    expect(err.message).toContain(`${F} is in location US`);
    expect(err.fix).toContain("BQ_LOCATION=US");
  });

  it("fails preflight on a missing dataset without retrying, naming it and the targets/features split", async () => {
    const bq = new BigQueryWarehouse({ project: standIns.project, apiEndpoint: standIns.bigqueryEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY });
    const first = standIns.requests.length;
    const err = await rejection(bq.preflight([F, "bqx_ml_v3_analytics_v9"]));
    expect(err.reason).toBe("bigquery-not-found");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("bqx_ml_v3_analytics_v9");
    expect(err.fix).toContain("TARGETS_DATASET");
    expect(standIns.requests.slice(first).map((r) => `${r.method} ${r.status}`)).toEqual(["datasets.get 200", "datasets.get 404"]);
  });

  it("fails preflight on accessDenied without retrying, naming roles/bigquery.dataViewer on the dataset", async () => {
    standIns.faults.accessDeniedDatasets.add(T);
    const bq = new BigQueryWarehouse({ project: standIns.project, apiEndpoint: standIns.bigqueryEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY });
    const first = standIns.requests.length;
    const err = await rejection(bq.preflight([T]));
    expect(err.reason).toBe("bigquery-access-denied");
    expect(err.retryable).toBe(false);
    expect(err.fix).toContain(`roles/bigquery.dataViewer on dataset ${standIns.project}:${T}`);
    expect(standIns.requests.slice(first).filter((r) => r.method === "datasets.get")).toHaveLength(1);
  });
});

describe("extractWithBigQuery", () => {
  it("writes a feature table's checkpoint equal to the DuckDB adapter's (renamed columns, nulls, fingerprint)", async () => {
    const t = plannedTask(`corr_bqx_${PAIR}_spy`);
    expect(t.columns.some((c) => c.source !== c.target)).toBe(true);
    const got = await extractWithBigQuery(t);
    const expected = await duckCheckpoint(t);
    expect(got.rows).toBe(expected.rows);
    expect(got.rows).toBeGreaterThan(250);
    await expectSameCheckpoint(t.checkpointPath, expected.path);
    const footer = await readFooterSummary(t.checkpointPath);
    expect(footer.keyValueMetadata[FINGERPRINT_KEY]).toBe(t.fingerprint);
    expect([...footer.nullCounts.values()].some((n) => (n ?? 0) > 0)).toBe(true);
    expect(await leftovers()).toEqual([]);
  });

  it("writes the target table's checkpoint equal to the DuckDB adapter's (not-null rule, row limit, date range)", async () => {
    const t = plannedTask(discovery.target.table, { rowLimit: 250, dateFrom: "2020-01-01", dateTo: "2020-01-01" });
    const got = await extractWithBigQuery(t);
    const expected = await duckCheckpoint(t);
    expect(got.rows).toBe(expected.rows);
    expect(got.rows).toBe(250);
    await expectSameCheckpoint(t.checkpointPath, expected.path);
  });

  it("survives 429/503s, a job that fails with backendError, an unavailable CreateReadSession and dropped ReadRows streams", async () => {
    standIns.faults.restErrors.push(
      { method: "jobs.insert", status: 429, reason: "rateLimitExceeded", count: 1 },
      { method: "jobs.getQueryResults", status: 503, reason: "backendError", count: 2 },
      { method: "jobs.get", status: 500, reason: "internalError", count: 1 },
    );
    standIns.faults.jobFailures.push({ reason: "backendError", count: 1 });
    standIns.faults.grpcErrors.push({ method: "CreateReadSession", code: 14, count: 1 });
    standIns.faults.readRowsDrops.push({ afterBatches: 1, mode: "unavailable", count: 1 }, { afterBatches: 1, mode: "internal", count: 1 }, { afterBatches: 1, mode: "disconnect", count: 1 });
    const first = standIns.requests.length;
    const t = plannedTask(`mom_${PAIR}`);
    const got = await extractWithBigQuery(t);
    const expected = await duckCheckpoint(t);
    expect(got.rows).toBe(expected.rows);
    // insert, two polls, the re-run job, the session, three resumed streams (a poll may add one)
    expect(got.retries).toBeGreaterThanOrEqual(7);
    await expectSameCheckpoint(t.checkpointPath, expected.path);

    const log = standIns.requests.slice(first);
    const statuses = (method: string) => log.filter((r) => r.method === method).map((r) => r.status);
    expect(statuses("jobs.insert")).toEqual([429, 200, 200]); // the failed job ran again under a new id
    expect(statuses("jobs.getQueryResults")).toEqual(expect.arrayContaining([503, 503, 200]));
    expect(statuses("CreateReadSession")).toEqual(["UNAVAILABLE", "OK"]);
    const reads = log.filter((r) => r.method === "ReadRows");
    expect(reads.map((r) => r.status)).toEqual(["UNAVAILABLE", "INTERNAL", "DISCONNECTED", "OK"]);
    // A cut connection may lose the batch written just before it, so the last resume starts at
    // 128 or 192; the equal checkpoint above shows no row was lost or read twice either way.
    expect(reads.slice(0, 3).map((r) => r.offset)).toEqual([0, 64, 128]);
    expect([128, 192]).toContain(reads[3]?.offset);
  });

  it("resumes a ReadRows stream that goes silent for readIdleTimeoutMs", async () => {
    standIns.faults.readRowsDrops.push({ afterBatches: 2, mode: "stall", count: 1 });
    const first = standIns.requests.length;
    const t = plannedTask(`vol_${PAIR}`, { gcp: settings(standIns, { readIdleTimeoutMs: 300 }) });
    await extractWithBigQuery(t);
    await expectSameCheckpoint(t.checkpointPath, (await duckCheckpoint(t)).path);
    const reads = standIns.requests.slice(first).filter((r) => r.method === "ReadRows");
    expect(reads.map((r) => [r.status, r.offset])).toEqual([["STALLED", 0], ["OK", 128]]);
  });

  it("survives a seeded 30% rate of 429/503 answers on every REST call", async () => {
    labStandIns.faults.restErrorRate = 0.3;
    const first = labStandIns.requests.length;
    const t = labTask("big_ints", ["big", "f", "note"]);
    await extractWithBigQuery(t);
    await expectSameCheckpoint(t.checkpointPath, (await duckCheckpoint(t)).path);
    const statuses = labStandIns.requests.slice(first).filter((r) => r.api === "bigquery").map((r) => r.status);
    expect(statuses.filter((s) => s === 429 || s === 503).length).toBeGreaterThan(0);
  });

  it("fails a table in a dataset it may not read without retrying, naming the role", async () => {
    standIns.faults.accessDeniedDatasets.add(F);
    const first = standIns.requests.length;
    const err = await rejection(extractWithBigQuery(plannedTask(`agg_${PAIR}`)));
    expect(err.reason).toBe("bigquery-access-denied");
    expect(err.retryable).toBe(false);
    expect(err.fix).toContain(`roles/bigquery.dataViewer on dataset ${standIns.project}:${F}`);
    expect(standIns.requests.slice(first).map((r) => r.method)).toEqual(["jobs.insert"]);
  });

  it("fails without retrying when the read session is refused, naming roles/bigquery.readSessionUser", async () => {
    standIns.faults.readSessionDenied = true;
    const first = standIns.requests.length;
    const err = await rejection(extractWithBigQuery(plannedTask(`agg_${PAIR}`)));
    expect(err.reason).toBe("bigquery-access-denied");
    expect(err.fix).toContain(`roles/bigquery.readSessionUser on project ${standIns.project}`);
    expect(standIns.requests.slice(first).filter((r) => r.method === "CreateReadSession")).toHaveLength(1);
    expect(await leftovers()).toEqual([]);
  });

  it("fails a missing table without retrying, naming the table and the dataset split", async () => {
    standIns.faults.missingTables.add(`${F}.agg_${PAIR}`);
    const first = standIns.requests.length;
    const t = plannedTask(`agg_${PAIR}`);
    const err = await rejection(extractWithBigQuery(t));
    expect(err.reason).toBe("bigquery-not-found");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain(`${F}.agg_${PAIR}`);
    expect(err.fix).toContain("TARGETS_DATASET");
    expect(standIns.requests.slice(first).map((r) => r.method)).toEqual(["jobs.insert"]);
    expect(existsSync(t.checkpointPath)).toBe(false);
  });

  it("fails a hung query within its timeout with a retryable error naming the table, and cancels the job", async () => {
    standIns.faults.hangingTables.add(`${F}.agg_${PAIR}`);
    const first = standIns.requests.length;
    const t = plannedTask(`agg_${PAIR}`, { gcp: settings(standIns, { queryTimeoutMs: 1_500 }) });
    const started = performance.now();
    const err = await rejection(extractWithBigQuery(t));
    const seconds = (performance.now() - started) / 1000;
    expect(err.reason).toBe("query-timeout");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(`${F}.agg_${PAIR}`);
    expect(err.message).toContain("1500 ms");
    expect(err.message).toContain("was cancelled");
    expect(seconds).toBeGreaterThanOrEqual(1.4);
    expect(seconds).toBeLessThan(4);
    expect(standIns.requests.slice(first).filter((r) => r.method === "jobs.cancel").map((r) => r.status)).toEqual([200]);
  });
});

describe("extractWithBigQuery on hand-made tables", () => {
  it("keeps INT64 values above 2^53, microsecond keys, strings and nulls exact", async () => {
    const t = labTask("big_ints", ["big", "f", "note"]);
    const got = await extractWithBigQuery(t);
    const expected = await duckCheckpoint(t);
    expect(got.rows).toBe(200);
    await expectSameCheckpoint(t.checkpointPath, expected.path);
    const df = pl.readParquet(t.checkpointPath);
    expect(df.getColumn("big_ints_big").dtype.equals(pl.Int64)).toBe(true);
    const big = exactValues(df, "big_ints_big");
    expect(big[1]).toBe((-(4611686018427387904n + 1000003n)).toString());
    expect(big[3]).toBeNull();
    expect(big[198]).toBe((4611686018427387904n + 198n * 1000003n).toString());
    expect(exactValues(df, "interval_time")[5]).toBe((BASE_US + 5n * 60_000_000n + 5n).toString());
  });

  it("splits 25,000 rows into row groups of CHECKPOINT_ROW_GROUP_ROWS across record-batch boundaries", async () => {
    const t = labTask("many_rows", ["x", "n"]);
    await extractWithBigQuery(t);
    const expected = await duckCheckpoint(t);
    await expectSameCheckpoint(t.checkpointPath, expected.path);
    expect((await readFooterSummary(t.checkpointPath)).rowGroups.map((g) => g.numRows)).toEqual([10_000, 10_000, 5_000]);
  });

  it("writes an empty checkpoint with the full schema when the date range holds no rows", async () => {
    const t = labTask("big_ints", ["big", "f", "note"], { dateFrom: "2031-01-01", dateTo: "2031-12-31" });
    const got = await extractWithBigQuery(t);
    const expected = await duckCheckpoint(t);
    expect(got.rows).toBe(0);
    await expectSameCheckpoint(t.checkpointPath, expected.path);
  });

  it("fails a table with duplicate keys like the DuckDB adapter, leaving no file behind", async () => {
    const t = labTask("dup_keys", ["x"]);
    const err = await rejection(extractWithBigQuery(t));
    const duckErr = await rejection(duckCheckpoint(t));
    expect(err.reason).toBe("duplicate-keys");
    expect(duckErr.reason).toBe("duplicate-keys");
    expect(err.message).toContain("repeats 2 interval_time values");
    expect(existsSync(t.checkpointPath)).toBe(false);
    expect(await leftovers()).toEqual([]);
  });

  it("drops rows with a NULL key like the DuckDB adapter (no date range holds them)", async () => {
    const t = labTask("null_keys", ["x"]);
    const got = await extractWithBigQuery(t);
    const expected = await duckCheckpoint(t);
    expect(got.rows).toBe(98);
    await expectSameCheckpoint(t.checkpointPath, expected.path);
  });

  it("answers the client's query() fast path with BigQuery's JSON encoding (INT64 strings, int64 timestamps)", async () => {
    const authClient = authClientForEndpoint(labStandIns.bigqueryEndpoint);
    expect(authClient && (await authClient.getAccessToken()).token).toBe(STANDIN_ACCESS_TOKEN);
    const client = new BigQuery({ projectId: labStandIns.project, apiEndpoint: labStandIns.bigqueryEndpoint, ...(authClient ? { authClient } : {}) });
    const [rows] = await client.query({ query: `SELECT interval_time, big FROM \`${labStandIns.project}.${LAB}.big_ints\` ORDER BY interval_time LIMIT 3`, wrapIntegers: true });
    expect(rows.map((r: { big: { value: string } | null }) => r.big?.value ?? null)).toEqual([
      "4611686018427387904",
      (-(4611686018427387904n + 1000003n)).toString(),
      (4611686018427387904n + 2n * 1000003n).toString(),
    ]);
    expect((rows[1] as { interval_time: { value: string } }).interval_time.value).toBe("2020-01-01T00:01:00.000001000Z");
    expect(labStandIns.requests.some((r) => r.method === "jobs.query" && r.status === 200)).toBe(true);
  });
});

describe("the worker's gcp path on a piscina pool", () => {
  it("runs several tables at once on one thread while their queries wait", async () => {
    labStandIns.faults.latencyMs = 3_000;
    const pool = new Piscina<ExtractTask, ExtractResult | WorkerFailure>({
      filename: new URL("../../src/extract/worker.ts", import.meta.url).href,
      maxThreads: 1,
      minThreads: 1,
      concurrentTasksPerWorker: 4,
    });
    try {
      const columns: Record<string, string[]> = { big_ints: ["big"], many_rows: ["x"], dup_keys: ["x"] };
      const tasks = ["big_ints", "many_rows", "dup_keys", "big_ints"].map((table) => labTask(table, columns[table] ?? []));
      const started = performance.now();
      const results = await Promise.all(tasks.map((t) => pool.run(t)));
      const seconds = (performance.now() - started) / 1000;
      // Four queries of 3 s each on one thread: together well under the 12 s they take in a row.
      expect(seconds).toBeLessThan(8);
      expect(results.map((r) => ("failed" in r ? r.reason : r.rows))).toEqual([200, 25_000, "duplicate-keys", 200]);
    } finally {
      await pool.destroy();
    }
  });
});
