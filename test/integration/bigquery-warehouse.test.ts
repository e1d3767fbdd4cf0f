// The BigQuery adapter driven through the real client libraries (@google-cloud/bigquery over
// REST, @google-cloud/bigquery-storage's BigQueryReadClient over gRPC) against local stand-ins
// that run the SQL on DuckDB. The rows it reads, by either route (a read session on the table
// itself, or a query job and its result), are compared, value by value and type by type, with the
// DuckDB adapter's for the same query on the same warehouse file: both hand the aligner identical
// frames. The Storage Read stand-in is held to what the service accepts.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { BigQuery } from "@google-cloud/bigquery";
import { DuckDBInstance } from "@duckdb/node-api";
import pl from "nodejs-polars";
import { Piscina } from "piscina";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { TARGET_NOT_NULL_COLUMN, planTables, type Discovery } from "../../src/discovery.ts";
import type { ExtractResult, ExtractTask } from "../../src/extract/task.ts";
import { type SliceBounds, type TableQuery, DUCKDB_KEY_TYPES, type ColumnMapping, type GcpTaskSettings, type TableInfo } from "../../src/warehouse/port.ts";
import { STANDIN_ACCESS_TOKEN, authClientForEndpoint } from "../../src/gcp/auth.ts";
import { buildSampleWarehouse } from "../../standins/sample/build.ts";
import { BigQueryWarehouse, closeWorkerClients } from "../../src/warehouse/bigquery.ts";
import { READ_STREAMS_PER_SESSION } from "../../src/concurrency.ts";
import { readBigQueryRows, tableRowRestriction } from "../../src/warehouse/bigquery-extract.ts";
import { createReadClient } from "../../src/warehouse/bigquery-clients.ts";
import { DuckDBWarehouse } from "../../src/warehouse/duckdb.ts";
import { readOrderedTable, readSlice, workerConnection } from "../../src/warehouse/duckdb-read.ts";
import { startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { rejection } from "../support/rejection.ts";

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
    await c.run(
      `CREATE TABLE ${LAB}.dup_keys AS SELECT ${key("CASE WHEN i IN (10, 11, 40) THEN i - 1 ELSE i END")} AS interval_time, (i * 1.5)::DOUBLE AS x FROM range(100) r(i)`,
    );
    await c.run(
      `CREATE TABLE ${LAB}.null_keys AS SELECT CASE WHEN i IN (5, 50) THEN NULL ELSE ${key("i")} END AS interval_time, (i * 1.5)::DOUBLE AS x FROM range(100) r(i)`,
    );
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
    duckTables = new Map([
      [F, await duck.listTables(F)],
      [T, await duck.listTables(T)],
    ]);
  } finally {
    await duck.close();
  }
  discovery = planTables(PAIR, { dataset: F, tables: duckTables.get(F) ?? [] }, { dataset: T, tables: duckTables.get(T) ?? [] }, DUCKDB_KEY_TYPES);
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
  return {
    project: s.project,
    bigqueryEndpoint: s.bigqueryEndpoint,
    storageReadEndpoint: s.storageEndpoint,
    queryTimeoutMs: 20_000,
    retry: FAST_RETRY,
    ...extra,
  };
}

interface Read {
  settings: GcpTaskSettings;
  warehouse: string;
  query: TableQuery;
  /** A slice's key range; the target's whole ordered table when absent. */
  slice?: SliceBounds;
}

function read(s: StandIns, warehouse: string, query: TableQuery, extra: Partial<Read> = {}): Read {
  return { settings: settings(s), warehouse, query, ...extra };
}

function tableQuery(dataset: string, table: string, columns: ColumnMapping[], extra: Partial<TableQuery> = {}): TableQuery {
  return { dataset, table, columns, dateFrom: "2020-01-01", dateTo: "2024-12-31", rowLimit: undefined, notNullColumn: undefined, ...extra };
}

/** The whole date range as one slice (no bounds): every row of the table, in any order. */
const WHOLE: SliceBounds = { firstRowGroup: 0, endRowGroup: 1, firstRow: 0, endRow: 0, afterKey: undefined, throughKey: undefined };

function planned(table: string, extra: Partial<TableQuery> = {}, read_: Partial<Read> = {}): Read {
  const p = table === discovery.target.table ? discovery.target : discovery.features.find((t) => t.table === table);
  if (!p) throw new Error(`${table} is not planned`);
  const notNull = p.role === "target" ? { notNullColumn: TARGET_NOT_NULL_COLUMN } : {};
  return read(standIns, sample, tableQuery(p.dataset, p.table, p.columns, { ...notNull, ...extra }), {
    ...(p.role === "target" ? {} : { slice: WHOLE }),
    ...read_,
  });
}

function labRead(table: string, columns: Array<[string, string]>, extra: Partial<TableQuery> = {}, read_: Partial<Read> = {}): Read {
  return read(
    labStandIns,
    lab,
    tableQuery(
      LAB,
      table,
      columns.map(([c, type]) => ({ source: c, target: `${table}_${c}`, type })),
      extra,
    ),
    { settings: settings(labStandIns), slice: WHOLE, ...read_ },
  );
}

/** Both backends' rows for the read, sorted by key (a slice's rows come in no particular order). */
async function bothBackends(r: Read): Promise<{ bq: pl.DataFrame; duck: pl.DataFrame; retries: number }> {
  const got = await readBigQueryRows(r.settings, r.query, r.slice);
  const connection = await workerConnection(r.warehouse, { memoryLimitBytes: 256 * 1024 ** 2, threads: 1 });
  const duck = r.slice ? await readSlice(connection, r.query, r.slice) : await readOrderedTable(connection, r.query);
  return { bq: got.frame.sort("interval_time"), duck: duck.sort("interval_time"), retries: got.retries };
}

/** Column values that compare exactly (64-bit integers and timestamps as decimal strings). */
function exactValues(df: pl.DataFrame, name: string): unknown[] {
  const s = df.getColumn(name);
  if (s.dtype.equals(pl.Int64)) return s.cast(pl.Utf8).toArray();
  if (s.dtype.equals(pl.Datetime("us", "UTC"))) return s.cast(pl.Int64).cast(pl.Utf8).toArray();
  return s.toArray();
}

function expectSameFrames(a: pl.DataFrame, b: pl.DataFrame): void {
  expect(a.columns).toEqual(b.columns);
  expect(a.dtypes.map(String)).toEqual(b.dtypes.map(String));
  expect(a.height).toBe(b.height);
  for (const name of b.columns) expect(exactValues(a, name), name).toEqual(exactValues(b, name));
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
        expect(
          inserts.filter((r) => r.query?.includes(`${dataset}\`.INFORMATION_SCHEMA.${view}`)),
          `${dataset} ${view}`,
        ).toHaveLength(1);
      }
    }
    expect(inserts).toHaveLength(4);
    // 17,000 feature columns do not fit one 5,000-row page: the listing followed pageTokens.
    expect(standIns.requests.slice(first).filter((r) => r.method === "jobs.getQueryResults").length).toBeGreaterThan(8);
  });

  it("retries a 503 on a discovery query and logs the retry", async () => {
    const warnings: string[] = [];
    const log = { warn: (_obj: object, msg: string) => void warnings.push(msg) } as unknown as NonNullable<
      ConstructorParameters<typeof BigQueryWarehouse>[0]["log"]
    >;
    const bq = new BigQueryWarehouse({ project: standIns.project, apiEndpoint: standIns.bigqueryEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY, log });
    standIns.faults.restErrors.push({ method: "jobs.insert", status: 503, reason: "backendError", count: 1 });
    const tables = await bq.listTables(T);
    expect(tables.map((t) => t.name)).toEqual((duckTables.get(T) ?? []).map((t) => t.name));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^retrying jobs\.insert in \d+ ms after: Injected backendError$/);
  });

  it("fails preflight when a dataset lives in another location than BQ_LOCATION", async () => {
    const bq = new BigQueryWarehouse({
      project: standIns.project,
      location: "EU",
      apiEndpoint: standIns.bigqueryEndpoint,
      queryTimeoutMs: 20_000,
      retry: FAST_RETRY,
    });
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

describe("readBigQueryRows", () => {
  it("reads a feature table's rows exactly as the DuckDB adapter does (renamed columns, types, nulls)", async () => {
    const r = planned(`corr_bqx_${PAIR}_spy`);
    expect(r.query.columns.some((c) => c.source !== c.target)).toBe(true);
    const { bq, duck } = await bothBackends(r);
    expect(bq.height).toBeGreaterThan(250);
    expectSameFrames(bq, duck);
    expect(bq.getColumn("interval_time").dtype.toString()).toBe(pl.Datetime("us", "UTC").toString());
    expect(bq.columns.slice(1).some((c) => bq.getColumn(c).nullCount() > 0)).toBe(true);
  });

  it("reads a table through one read session on the table itself, no query job: the selected fields, the restriction, several streams, sorted by key", async () => {
    const first = labStandIns.requests.length;
    const { bq, duck } = await bothBackends(
      labRead(
        "many_rows",
        [
          ["x", "DOUBLE"],
          ["n", "BIGINT"],
        ],
        { dateFrom: "2020-01-02", dateTo: "2020-01-31" },
      ),
    );
    // 2020-01-02 00:00 is row 1440; 25,000 one-minute rows end within January.
    expect(bq.height).toBe(25_000 - 1440);
    expectSameFrames(bq, duck);
    const log = labStandIns.requests.slice(first);
    expect(log.filter((r) => r.api === "bigquery")).toEqual([]);
    const sessions = log.filter((r) => r.method === "CreateReadSession");
    expect(sessions.map((r) => [r.table, r.status])).toEqual([[`projects/${labStandIns.project}/datasets/${LAB}/tables/many_rows`, "OK"]]);
    expect(sessions[0]!.streams).toBe(3);
    expect(new Set(log.filter((r) => r.method === "ReadRows" && r.status === "OK").map((r) => r.stream)).size).toBe(3);
  });

  it("reads the target table's rows through a read session as the DuckDB adapter does (not-null rule, date range)", async () => {
    const first = standIns.requests.length;
    const { bq, duck } = await bothBackends(planned(discovery.target.table, { dateFrom: "2020-01-01", dateTo: "2020-01-01" }));
    expect(bq.height).toBeGreaterThan(100);
    expect(bq.getColumn(TARGET_NOT_NULL_COLUMN).nullCount()).toBe(0);
    expectSameFrames(bq, duck);
    expect(standIns.requests.slice(first).filter((r) => r.method === "jobs.insert")).toEqual([]);
  });

  it("reads the target table's rows as the DuckDB adapter does (not-null rule, row limit, date range)", async () => {
    const r = planned(discovery.target.table, { rowLimit: 250, dateFrom: "2020-01-01", dateTo: "2020-01-01" });
    const { bq, duck } = await bothBackends(r);
    expect(bq.height).toBe(250);
    expect(bq.getColumn(TARGET_NOT_NULL_COLUMN).nullCount()).toBe(0);
    expectSameFrames(bq, duck);
  });

  it("reads one slice's key range, bounds exact to the microsecond, as the DuckDB adapter does", async () => {
    // Keys carry sub-millisecond parts; the slice is (key 40, key 120].
    const after = BASE_US + 40n * 60_000_000n + 40n;
    const through = BASE_US + 120n * 60_000_000n + 120n;
    const slice: SliceBounds = { firstRowGroup: 1, endRowGroup: 2, firstRow: 41, endRow: 121, afterKey: after, throughKey: through };
    const { bq, duck } = await bothBackends(
      labRead(
        "many_rows",
        [
          ["x", "DOUBLE"],
          ["n", "BIGINT"],
        ],
        {},
        { slice },
      ),
    );
    expect(bq.height).toBe(80);
    expect(exactValues(bq, "interval_time")[0]).toBe((BASE_US + 41n * 60_000_000n + 41n).toString());
    expect(exactValues(bq, "interval_time")[79]).toBe(through.toString());
    expectSameFrames(bq, duck);
  });

  it("on the query route survives 429/503s, a job that fails with backendError, an unavailable CreateReadSession and dropped ReadRows streams", async () => {
    standIns.faults.restErrors.push(
      { method: "jobs.insert", status: 429, reason: "rateLimitExceeded", count: 1 },
      { method: "jobs.getQueryResults", status: 503, reason: "backendError", count: 2 },
      { method: "jobs.get", status: 500, reason: "internalError", count: 1 },
    );
    standIns.faults.jobFailures.push({ reason: "backendError", count: 1 });
    standIns.faults.grpcErrors.push({ method: "CreateReadSession", code: 14, count: 1 });
    standIns.faults.readRowsDrops.push(
      { afterBatches: 1, mode: "unavailable", count: 1 },
      { afterBatches: 1, mode: "internal", count: 1 },
      { afterBatches: 1, mode: "disconnect", count: 1 },
    );
    const first = standIns.requests.length;
    const { bq, duck, retries } = await bothBackends(planned(`mom_${PAIR}`, {}, { settings: settings(standIns, { readRoute: "query" }) }));
    // insert, two polls, the re-run job, the session, three resumed streams (a poll may add one)
    expect(retries).toBeGreaterThanOrEqual(7);
    expectSameFrames(bq, duck);

    const log = standIns.requests.slice(first);
    const statuses = (method: string) => log.filter((r) => r.method === method).map((r) => r.status);
    expect(statuses("jobs.insert")).toEqual([429, 200, 200]); // the failed job ran again under a new id
    expect(statuses("jobs.getQueryResults")).toEqual(expect.arrayContaining([503, 503, 200]));
    expect(statuses("CreateReadSession")).toEqual(["UNAVAILABLE", "OK"]);
    const reads = log.filter((r) => r.method === "ReadRows");
    expect(reads.map((r) => r.status)).toEqual(["UNAVAILABLE", "INTERNAL", "DISCONNECTED", "OK"]);
    // A cut connection may lose the batch written just before it, so the last resume starts at
    // 128 or 192; the equal frames above show no row was lost or read twice either way.
    expect(reads.slice(0, 3).map((r) => r.offset)).toEqual([0, 64, 128]);
    expect([128, 192]).toContain(reads[3]?.offset);
  });

  it("resumes a ReadRows stream that goes silent for readIdleTimeoutMs", async () => {
    standIns.faults.readRowsDrops.push({ afterBatches: 2, mode: "stall", count: 1 });
    const first = standIns.requests.length;
    const { bq, duck } = await bothBackends(planned(`vol_${PAIR}`, {}, { settings: settings(standIns, { readIdleTimeoutMs: 300 }) }));
    expectSameFrames(bq, duck);
    const reads = standIns.requests.slice(first).filter((r) => r.method === "ReadRows");
    expect(reads.map((r) => [r.status, r.offset])).toEqual([
      ["STALLED", 0],
      ["OK", 128],
    ]);
  });

  it("on the query route survives a seeded 30% rate of 429/503 answers on every REST call", async () => {
    labStandIns.faults.restErrorRate = 0.3;
    const first = labStandIns.requests.length;
    const { bq, duck } = await bothBackends(
      labRead(
        "big_ints",
        [
          ["big", "BIGINT"],
          ["f", "DOUBLE"],
          ["note", "VARCHAR"],
        ],
        {},
        { settings: settings(labStandIns, { readRoute: "query" }) },
      ),
    );
    expectSameFrames(bq, duck);
    const statuses = labStandIns.requests
      .slice(first)
      .filter((r) => r.api === "bigquery")
      .map((r) => r.status);
    expect(statuses.filter((s) => s === 429 || s === 503).length).toBeGreaterThan(0);
  });

  it("fails a table in a dataset it may not read without retrying, naming the role", async () => {
    standIns.faults.accessDeniedDatasets.add(F);
    const first = standIns.requests.length;
    const r = planned(`agg_${PAIR}`);
    const err = await rejection(readBigQueryRows(r.settings, r.query, r.slice));
    expect(err.reason).toBe("bigquery-access-denied");
    expect(err.retryable).toBe(false);
    expect(err.fix).toContain(`roles/bigquery.dataViewer on dataset ${standIns.project}:${F}`);
    expect(standIns.requests.slice(first).map((q) => `${q.method} ${q.status}`)).toEqual(["CreateReadSession PERMISSION_DENIED"]);
  });

  it("fails without retrying when the read session is refused, naming roles/bigquery.readSessionUser", async () => {
    standIns.faults.readSessionDenied = true;
    const first = standIns.requests.length;
    const r = planned(`agg_${PAIR}`);
    const err = await rejection(readBigQueryRows(r.settings, r.query, r.slice));
    expect(err.reason).toBe("bigquery-access-denied");
    expect(err.fix).toContain(`roles/bigquery.readSessionUser on project ${standIns.project}`);
    expect(standIns.requests.slice(first).filter((q) => q.method === "CreateReadSession")).toHaveLength(1);
  });

  it("fails a missing table without retrying, naming the table and the dataset split", async () => {
    standIns.faults.missingTables.add(`${F}.agg_${PAIR}`);
    const first = standIns.requests.length;
    const r = planned(`agg_${PAIR}`);
    const err = await rejection(readBigQueryRows(r.settings, r.query, r.slice));
    expect(err.reason).toBe("bigquery-not-found");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain(`${F}.agg_${PAIR}`);
    expect(err.fix).toContain("TARGETS_DATASET");
    expect(standIns.requests.slice(first).map((q) => `${q.method} ${q.status}`)).toEqual(["CreateReadSession NOT_FOUND"]);
  });

  it("on the query route fails a hung query within its timeout with a retryable error naming the table, and cancels the job", async () => {
    standIns.faults.hangingTables.add(`${F}.agg_${PAIR}`);
    const first = standIns.requests.length;
    const r = planned(`agg_${PAIR}`, {}, { settings: settings(standIns, { queryTimeoutMs: 1_500, readRoute: "query" }) });
    const started = performance.now();
    const err = await rejection(readBigQueryRows(r.settings, r.query, r.slice));
    const seconds = (performance.now() - started) / 1000;
    expect(err.reason).toBe("query-timeout");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(`${F}.agg_${PAIR}`);
    expect(err.message).toContain("1500 ms");
    expect(err.message).toContain("was cancelled");
    expect(seconds).toBeGreaterThanOrEqual(1.4);
    expect(seconds).toBeLessThan(4);
    expect(
      standIns.requests
        .slice(first)
        .filter((q) => q.method === "jobs.cancel")
        .map((q) => q.status),
    ).toEqual([200]);
  });
});

describe("readBigQueryRows on hand-made tables", () => {
  it("keeps INT64 values above 2^53, microsecond keys, strings and nulls exact", async () => {
    const { bq, duck } = await bothBackends(
      labRead("big_ints", [
        ["big", "BIGINT"],
        ["f", "DOUBLE"],
        ["note", "VARCHAR"],
      ]),
    );
    expect(bq.height).toBe(200);
    expectSameFrames(bq, duck);
    expect(bq.getColumn("big_ints_big").dtype.equals(pl.Int64)).toBe(true);
    const big = exactValues(bq, "big_ints_big");
    expect(big[1]).toBe((-(4611686018427387904n + 1000003n)).toString());
    expect(big[3]).toBeNull();
    expect(big[198]).toBe((4611686018427387904n + 198n * 1000003n).toString());
    expect(exactValues(bq, "interval_time")[5]).toBe((BASE_US + 5n * 60_000_000n + 5n).toString());
  });

  it("reads 25,000 rows across record-batch boundaries", async () => {
    const { bq, duck } = await bothBackends(
      labRead("many_rows", [
        ["x", "DOUBLE"],
        ["n", "BIGINT"],
      ]),
    );
    expect(bq.height).toBe(25_000);
    expectSameFrames(bq, duck);
  });

  it("returns an empty frame with the full schema when the date range holds no rows", async () => {
    const { bq, duck } = await bothBackends(
      labRead(
        "big_ints",
        [
          ["big", "BIGINT"],
          ["f", "DOUBLE"],
          ["note", "VARCHAR"],
        ],
        { dateFrom: "2031-01-01", dateTo: "2031-12-31" },
      ),
    );
    expect(bq.height).toBe(0);
    expectSameFrames(bq, duck);
  });

  it("drops rows with a NULL key like the DuckDB adapter (no date range holds them)", async () => {
    const { bq, duck } = await bothBackends(labRead("null_keys", [["x", "DOUBLE"]]));
    expect(bq.height).toBe(98);
    expectSameFrames(bq, duck);
  });

  it("answers the client's query() fast path with BigQuery's JSON encoding (INT64 strings, int64 timestamps)", async () => {
    const authClient = authClientForEndpoint(labStandIns.bigqueryEndpoint);
    expect(authClient && (await authClient.getAccessToken()).token).toBe(STANDIN_ACCESS_TOKEN);
    const client = new BigQuery({ projectId: labStandIns.project, apiEndpoint: labStandIns.bigqueryEndpoint, ...(authClient ? { authClient } : {}) });
    const [rows] = await client.query({
      query: `SELECT interval_time, big FROM \`${labStandIns.project}.${LAB}.big_ints\` ORDER BY interval_time LIMIT 3`,
      wrapIntegers: true,
    });
    expect(rows.map((r: { big: { value: string } | null }) => r.big?.value ?? null)).toEqual([
      "4611686018427387904",
      (-(4611686018427387904n + 1000003n)).toString(),
      (4611686018427387904n + 2n * 1000003n).toString(),
    ]);
    expect((rows[1] as { interval_time: { value: string } }).interval_time.value).toBe("2020-01-01T00:01:00.000001000Z");
    expect(labStandIns.requests.some((r) => r.method === "jobs.query" && r.status === 200)).toBe(true);
  });
});

describe("the Storage Read stand-in, as strict as the service", () => {
  const many = `projects/bqx-lab/datasets/${LAB}/tables/many_rows`;
  const session = async (readSession: Record<string, unknown>, maxStreamCount: number) => {
    const client = await createReadClient(labStandIns.project, labStandIns.storageEndpoint);
    try {
      const [s] = await client.createReadSession(
        { parent: `projects/${labStandIns.project}`, readSession: { table: many, dataFormat: "ARROW", ...readSession }, maxStreamCount },
        { retry: null },
      );
      return s;
    } finally {
      await client.close();
    }
  };
  const refusal = async (p: Promise<unknown>) => {
    const err = (await p.then(
      () => undefined,
      (e: unknown) => e,
    )) as { code?: number; details?: string } | undefined;
    expect(err).toBeDefined();
    return err!;
  };

  it("honours max_stream_count, sends the selected fields in the table's order and estimates the bytes scanned", async () => {
    const restriction = tableRowRestriction({ dateFrom: "2020-01-01", dateTo: "2024-12-31", notNullColumn: undefined });
    const one = await session({ readOptions: { selectedFields: ["n", "interval_time"], rowRestriction: restriction } }, 1);
    const several = await session({ readOptions: { selectedFields: ["n", "interval_time"], rowRestriction: restriction } }, READ_STREAMS_PER_SESSION);
    expect(one.streams).toHaveLength(1);
    expect(several.streams).toHaveLength(3);
    // 25,000 rows x (8 + 8) bytes.
    expect(Number(several.estimatedTotalBytesScanned)).toBe(400_000);
    const { RecordBatchReader } = await import("apache-arrow");
    const reader = RecordBatchReader.from(Buffer.from(several.arrowSchema!.serializedSchema as Uint8Array));
    reader.open();
    expect(reader.schema.fields.map((f) => f.name)).toEqual(["interval_time", "n"]);
  });

  it.each([
    ["a function of a column", "DATE(interval_time) BETWEEN '2020-01-01' AND '2020-12-31'", /DATE\(\) is not supported/],
    ["OR", "n > 5 OR n < 2", /Expected AND/],
    ["an unknown column", "nope IS NOT NULL", /Unrecognized name: nope/],
    ["a malformed timestamp", "interval_time > TIMESTAMP '2020-13'", /Invalid TIMESTAMP literal/],
    [
      "a DATETIME compared with a TIMESTAMP column",
      "interval_time >= DATETIME '2020-01-01 00:00:00'",
      /No matching signature for operator >= for argument types: TIMESTAMP, DATETIME/,
    ],
  ])("refuses a row restriction with %s as INVALID_ARGUMENT", async (_label, rowRestriction, message) => {
    const err = await refusal(session({ readOptions: { rowRestriction } }, 1));
    expect(err.code).toBe(3);
    expect(err.details).toMatch(message);
  });

  it("refuses an unknown selected field as INVALID_ARGUMENT", async () => {
    const err = await refusal(session({ readOptions: { selectedFields: ["interval_time", "missing_col"] } }, 1));
    expect(err.code).toBe(3);
    expect(err.details).toMatch(/Field missing_col not found/);
  });

  it("answers PERMISSION_DENIED for bigquery.readsessions.create when the fault is set", async () => {
    labStandIns.faults.readSessionDenied = true;
    const err = await refusal(session({}, 1));
    expect(err.code).toBe(7);
    expect(err.details).toMatch(/bigquery\.readsessions\.create/);
  });
});

describe("the worker's gcp path on a piscina pool", () => {
  it("runs several tables at once on one thread while their queries wait, and refuses duplicate keys as the DuckDB path does", async () => {
    labStandIns.faults.latencyMs = 3_000;
    const pool = new Piscina<ExtractTask, ExtractResult>({
      filename: new URL("../../src/extract/worker.ts", import.meta.url).href,
      maxThreads: 1,
      minThreads: 1,
      concurrentTasksPerWorker: 4,
    });
    try {
      const keys = new BigInt64Array(new SharedArrayBuffer(8 * 200));
      for (let i = 0; i < 200; i++) keys[i] = BASE_US + BigInt(i) * 60_000_000n + BigInt(i % 997);
      const columns: Record<string, Array<[string, string]>> = { big_ints: [["big", "BIGINT"]], many_rows: [["x", "DOUBLE"]], dup_keys: [["x", "DOUBLE"]] };
      // The query route, whose jobs take the stand-in's latency; the table route where it says so.
      const task = (table: string, backend: "gcp" | "local", n: number, readRoute: "query" | "table" = "query"): ExtractTask => ({
        kind: "part",
        source:
          backend === "gcp"
            ? { backend, gcp: settings(labStandIns, { readRoute }) }
            : { backend, warehouse: lab, duckdb: { memoryLimitBytes: 256 * 1024 ** 2, threads: 1 } },
        query: labRead(table, columns[table] ?? []).query,
        keys,
        slice: { firstRowGroup: 0, endRowGroup: 1, firstRow: 0, endRow: 200, afterKey: undefined, throughKey: undefined },
        writing: { rowsPerGroup: 100, minMax: false },
        fingerprint: `${table}-${n}`,
        outPath: path.join(dir, `${table}-${backend}-${n}.parquet`),
      });
      labStandIns.served.peakRunningJobs = labStandIns.served.runningJobs;
      const results = await Promise.all(["big_ints", "many_rows", "dup_keys", "big_ints"].map((t, n) => pool.run(task(t, "gcp", n))));
      // Four queries of 3 s each on one thread: the stand-in saw them running at the same time
      // (counted by the service, not timed, so a loaded machine cannot fail it).
      expect(labStandIns.served.peakRunningJobs).toBe(4);
      const summary = (r: ExtractResult) => ("failed" in r ? r.reason : r.kind === "part" ? [r.sourceRows, r.part.rows, r.part.rowGroups] : r.kind);
      expect(results.map(summary)).toEqual([[200, 200, 2], [25_000, 200, 2], "duplicate-keys", [200, 200, 2]]);
      const duck = await pool.run(task("dup_keys", "local", 9));
      expect("failed" in duck && duck.reason).toBe("duplicate-keys");
      expect("failed" in duck && duck.message).toContain("repeats 2 interval_time values");
      const dupGcp = results[2]!;
      expect("failed" in dupGcp && dupGcp.message).toContain("repeats 2 interval_time values");
      // Read from the table itself, in no key order, the repeats are found all the same.
      const dupTable = await pool.run(task("dup_keys", "gcp", 11, "table"));
      expect("failed" in dupTable && dupTable.message).toContain("repeats 2 interval_time values");
      // Parts of one table written from either backend's rows are the same bytes.
      const local = await pool.run(task("big_ints", "local", 10));
      expect("failed" in local).toBe(false);
      const { readFile } = await import("node:fs/promises");
      expect((await readFile(path.join(dir, "big_ints-local-10.parquet"))).equals(await readFile(path.join(dir, "big_ints-gcp-0.parquet")))).toBe(true);
    } finally {
      await pool.destroy();
    }
  });
});
