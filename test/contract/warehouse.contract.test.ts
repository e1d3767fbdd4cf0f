// The warehouse port's contract, in Malloy's manner (one spec over every backend in a runtime
// list): each adapter's two halves, discovery (main thread) and extraction (pool workers), over
// the same small warehouse (test/support/contract-warehouse.ts). The embedded adapter reads the
// DuckDB file; the BigQuery adapter drives the real client libraries against the REST and
// Storage Read stand-ins serving that file. Each test states what every adapter must do, with the
// values the rows must hold (so the adapters' frames for the same read are equal: same rows, same
// values, same dtypes); what only one adapter does is tested in test/integration.
import { copyFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KEY_COLUMN } from "../../src/constants.ts";
import { JobError } from "../../src/errors.ts";
import { checkedKeyFrame } from "../../src/extract/part-writer.ts";
import type { SliceBounds, TableQuery, ColumnMapping, WarehouseDiscovery, WarehouseExtraction } from "../../src/warehouse/port.ts";
import { BigQueryWarehouse, closeWorkerClients } from "../../src/warehouse/bigquery.ts";
import { DuckDBWarehouse } from "../../src/warehouse/duckdb.ts";
import { openExtraction } from "../../src/warehouse/extraction.ts";
import { startBigQueryStandIns } from "../../standins/bigquery.ts";
import { DUPLICATED_ROWS, FEATURES, ROWS, TABLES, TARGETS, buildContractWarehouse, expected, keyOf } from "../support/contract-warehouse.ts";
import { onWarehouse } from "../support/job-process.ts";
import { bigQueryType } from "../../standins/warehouse.ts";
import { rejection } from "../support/rejection.ts";

const FAST_RETRY = { attempts: 3, baseDelayMs: 20, maxDelayMs: 200 };
const DAY = "2020-01-01";

interface Opened {
  discovery: WarehouseDiscovery;
  extraction: WarehouseExtraction;
  close(): Promise<void>;
}

interface WarehouseRuntime {
  name: string;
  /** The warehouse's own name for a DuckDB column type of the contract warehouse. */
  typeName(duckType: string): string;
  /**
   * Both halves over `file`. `rebuilt`: "dataset.table" names rewritten since the last open,
   * which BigQuery reports through their modification time (the stand-in cannot see the write).
   */
  open(file: string, rebuilt?: readonly string[]): Promise<Opened>;
}

const runtimes: WarehouseRuntime[] = [
  {
    name: "duckdb",
    typeName: (duckType) => duckType,
    async open(file) {
      const discovery = await DuckDBWarehouse.open(file);
      const extraction = await openExtraction({ backend: "local", warehouse: file, duckdb: { memoryLimitBytes: 256 * 1024 ** 2, threads: 1 } });
      return { discovery, extraction, close: () => discovery.close() };
    },
  },
  {
    name: "bigquery (stand-ins)",
    typeName: (duckType) => bigQueryType(duckType)[0],
    async open(file, rebuilt = []) {
      const s = await startBigQueryStandIns({ warehouse: file, batchRows: 32, modified: Object.fromEntries(rebuilt.map((t) => [t, Date.now()])) });
      const discovery = new BigQueryWarehouse({
        project: s.project,
        apiEndpoint: s.bigqueryEndpoint,
        storageReadEndpoint: s.storageEndpoint,
        queryTimeoutMs: 20_000,
        retry: FAST_RETRY,
      });
      const extraction = await openExtraction({
        backend: "gcp",
        gcp: { project: s.project, bigqueryEndpoint: s.bigqueryEndpoint, storageReadEndpoint: s.storageEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY },
      });
      return {
        discovery,
        extraction,
        async close() {
          await discovery.close();
          await s.close();
        },
      };
    },
  },
];

let dir: string;
let built: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "warehouse-contract-"));
  built = path.join(dir, "contract.duckdb");
  await buildContractWarehouse(built);
});

afterAll(async () => {
  await closeWorkerClients();
  await rm(dir, { recursive: true, force: true });
});

function query(table: keyof typeof TABLES, extra: Partial<TableQuery> = {}): TableQuery {
  const [dataset = "", name = ""] = table.split(".");
  const columns: ColumnMapping[] = TABLES[table].slice(1).map(([source, type]) => ({ source, target: `${name.replace("_eurusd", "")}_${source}`, type }));
  return { dataset, table: name, columns, dateFrom: DAY, dateTo: DAY, rowLimit: undefined, notNullColumn: undefined, ...extra };
}

/** Keys as µs strings, 64-bit integers as strings: values that compare exactly. */
function exact(df: pl.DataFrame, name: string): unknown[] {
  const s = df.getColumn(name);
  if (s.dtype.equals(pl.Int64) || name === KEY_COLUMN) return s.cast(pl.Int64).cast(pl.Utf8).toArray();
  return s.toArray();
}

const keyStrings = (rows: readonly number[]) => rows.map((i) => keyOf(i).toString());
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => from + k);

describe.each(runtimes)("the warehouse port on $name", (runtime) => {
  let wh: Opened;

  beforeAll(async () => {
    const file = path.join(dir, `${runtime.name.split(" ")[0]}.duckdb`);
    await copyFile(built, file);
    wh = await runtime.open(file);
  });

  afterAll(async () => {
    await wh?.close();
  });

  describe("discovery", () => {
    it("passes preflight on datasets that exist and refuses a missing one with a JobError naming it", async () => {
      await wh.discovery.preflight([FEATURES, TARGETS]);
      const err = await rejection(wh.discovery.preflight([FEATURES, "contract_nowhere"]));
      expect(err.message).toContain("contract_nowhere");
      expect(err.retryable).toBe(false);
      expect(err.fix).toMatch(/TARGETS_DATASET/);
    });

    it("lists every table of a dataset by name, with its columns in ordinal order, the key first, in the warehouse's type names", async () => {
      for (const dataset of [FEATURES, TARGETS]) {
        const tables = await wh.discovery.listTables(dataset);
        const want = Object.entries(TABLES).filter(([name]) => name.startsWith(`${dataset}.`));
        expect(tables.map((t) => t.name)).toEqual(want.map(([name]) => name.slice(dataset.length + 1)).sort());
        for (const table of tables) {
          expect(table.dataset).toBe(dataset);
          const columns = TABLES[`${dataset}.${table.name}` as keyof typeof TABLES];
          expect(table.columns).toEqual(columns.map(([name, type]) => ({ name, type: runtime.typeName(type) })));
        }
      }
    });

    it("classifies each key by its keyTypes: an instant as utc, a timestamp without zone as zoneless, a number as neither", async () => {
      const tables = new Map((await wh.discovery.listTables(FEATURES)).map((t) => [t.name, t]));
      const keyType = (name: string) => tables.get(name)!.columns.find((c) => c.name === KEY_COLUMN)!.type;
      const { utc, zoneless } = wh.discovery.keyTypes;
      expect(utc).toContain(keyType("agg_eurusd"));
      expect(zoneless).not.toContain(keyType("agg_eurusd"));
      expect(zoneless).toContain(keyType("zoneless_eurusd"));
      expect(utc).not.toContain(keyType("zoneless_eurusd"));
      const zeta = tables.get("agg_eurusd")!.columns.find((c) => c.name === "zeta")!.type;
      expect([...utc, ...zoneless]).not.toContain(zeta);
    });

    it("gives every table a version that stays the same while its rows do, and changes when they are rewritten", async () => {
      const file = path.join(dir, `${runtime.name.split(" ")[0]}-versions.duckdb`);
      await copyFile(built, file);
      const names = ["agg_eurusd", "dup_eurusd"];
      const versions = async (rebuilt?: string[]) => {
        const opened = await runtime.open(file, rebuilt);
        try {
          const first = await opened.discovery.tableVersions(FEATURES, names, { dateFrom: DAY, dateTo: DAY });
          const second = await opened.discovery.tableVersions(FEATURES, names, { dateFrom: DAY, dateTo: DAY });
          expect(second).toEqual(first);
          return new Map([...first].map(([table, v]) => [table, v.version]));
        } finally {
          await opened.close();
        }
      };
      const before = await versions();
      expect([...before.keys()].sort()).toEqual(names);
      for (const v of before.values()) expect(v).toMatch(/\S/);
      await onWarehouse(file, `UPDATE ${FEATURES}.agg_eurusd SET zeta = 424242 WHERE interval_time = (SELECT min(interval_time) FROM ${FEATURES}.agg_eurusd)`);
      const after = await versions([`${FEATURES}.agg_eurusd`]);
      expect(after.get("agg_eurusd")).not.toBe(before.get("agg_eurusd"));
      expect(after.get("dup_eurusd")).toBe(before.get("dup_eurusd"));
    });
  });

  describe("extraction", () => {
    it("reads the target's rows in strictly increasing key order, only those with the not-null column set", async () => {
      const got = await wh.extraction.readTarget(query(`${TARGETS}.targets_eurusd`, { notNullColumn: "target_a" }));
      const rows = range(0, ROWS).filter((i) => expected.targetA(i) !== null);
      expect(got.frame.columns).toEqual([KEY_COLUMN, "targets_target_b", "targets_target_a"]);
      // In the order read, not sorted here: the key order is the adapter's to give.
      expect(exact(got.frame, KEY_COLUMN)).toEqual(keyStrings(rows));
      expect(exact(got.frame, "targets_target_a")).toEqual(rows.map((i) => expected.targetA(i)));
      expect(exact(got.frame, "targets_target_b")).toEqual(rows.map((i) => expected.targetB(i).toString()));
      expect(got.frame.getColumn(KEY_COLUMN).dtype.toString()).toBe(pl.Datetime("us", "UTC").toString());
    });

    it("reads the target's first ROW_LIMIT rows by time", async () => {
      const got = await wh.extraction.readTarget(query(`${TARGETS}.targets_eurusd`, { notNullColumn: "target_a", rowLimit: 20 }));
      expect(exact(got.frame, KEY_COLUMN)).toEqual(
        keyStrings(
          range(0, ROWS)
            .filter((i) => expected.targetA(i) !== null)
            .slice(0, 20),
        ),
      );
    });

    it("reads a slice's rows, bounds exact to the microsecond, with every value and null the table holds", async () => {
      // (key 30, key 90]: rows 31..90.
      const slice: SliceBounds = { firstRowGroup: 1, endRowGroup: 2, firstRow: 31, endRow: 91, afterKey: keyOf(30), throughKey: keyOf(90) };
      const got = await wh.extraction.readSlice(query(`${FEATURES}.agg_eurusd`), slice);
      const frame = got.frame.sort(KEY_COLUMN);
      const rows = range(31, 91);
      expect(frame.columns).toEqual([KEY_COLUMN, "agg_zeta", "agg_alpha", "agg_note"]);
      expect(frame.dtypes.map(String)).toEqual([pl.Datetime("us", "UTC"), pl.Float64, pl.Int64, pl.String].map(String));
      expect(frame.height).toBe(60);
      expect(exact(frame, KEY_COLUMN)).toEqual(keyStrings(rows));
      expect(exact(frame, "agg_zeta")).toEqual(rows.map((i) => expected.zeta(i)));
      expect(exact(frame, "agg_alpha")).toEqual(rows.map((i) => expected.alpha(i).toString()));
      expect(exact(frame, "agg_note")).toEqual(rows.map((i) => expected.note(i)));
    });

    it("reads a key without a time zone as UTC", async () => {
      const got = await wh.extraction.readSlice(query(`${FEATURES}.zoneless_eurusd`, { zonelessKey: true }), {
        firstRowGroup: 0,
        endRowGroup: 1,
        firstRow: 0,
        endRow: ROWS,
        afterKey: undefined,
        throughKey: keyOf(9),
      });
      const frame = checkedKeyFrame(got.frame, `${FEATURES}.zoneless_eurusd`).sort(KEY_COLUMN);
      expect(exact(frame, KEY_COLUMN)).toEqual(keyStrings(range(0, 10)));
      expect(exact(frame, "zoneless_v")).toEqual(range(0, 10).map((i) => i / 4));
    });

    it("returns an empty frame with the full schema when the date range holds no rows", async () => {
      const got = await wh.extraction.readSlice(query(`${FEATURES}.agg_eurusd`, { dateFrom: "2031-01-01", dateTo: "2031-12-31" }), {
        firstRowGroup: 0,
        endRowGroup: 1,
        firstRow: 0,
        endRow: 0,
        afterKey: undefined,
        throughKey: undefined,
      });
      expect(got.frame.height).toBe(0);
      expect(got.frame.columns).toEqual([KEY_COLUMN, "agg_zeta", "agg_alpha", "agg_note"]);
      expect(got.frame.dtypes.map(String)).toEqual([pl.Datetime("us", "UTC"), pl.Float64, pl.Int64, pl.String].map(String));
    });

    it("hands over a feature table's repeated keys, which the worker's key check refuses as duplicate-keys", async () => {
      const got = await wh.extraction.readSlice(query(`${FEATURES}.dup_eurusd`), {
        firstRowGroup: 0,
        endRowGroup: 1,
        firstRow: 0,
        endRow: ROWS,
        afterKey: undefined,
        throughKey: undefined,
      });
      expect(got.frame.height).toBe(ROWS);
      expect(got.frame.getColumn(KEY_COLUMN).nUnique()).toBe(ROWS - DUPLICATED_ROWS.length);
      let err: unknown;
      try {
        checkedKeyFrame(got.frame, `${FEATURES}.dup_eurusd`);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(JobError);
      expect((err as JobError).reason).toBe("duplicate-keys");
      expect((err as JobError).message).toContain(`repeats ${DUPLICATED_ROWS.length} ${KEY_COLUMN} values`);
    });
  });
});
