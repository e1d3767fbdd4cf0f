// Builds the sample warehouse described by spec.ts as a DuckDB file: two schemas named like the
// BigQuery datasets, every table filled by DuckDB SQL from range(n) with deterministic
// pseudo-random values and nulls. The file appears atomically: it is written to
// `<path>.tmp-<pid>` and renamed over `path` only when complete.
import { existsSync } from "node:fs";
import { mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { isAlive } from "../../src/resources.ts";
import { DEFAULT_FEATURES_DATASET, DEFAULT_TARGETS_DATASET, KEY_COLUMN, PAIRS } from "../../src/constants.ts";
import { summaryRows, tableCoverage, targetNullTailRows } from "./coverage.ts";
import { nameHash, sampleTables, valueSeed, type SampleTable } from "./spec.ts";

export interface BuildSampleOptions {
  /** Where the DuckDB file ends up (replaced atomically if it exists). */
  path: string;
  pair: string;
  /** Minutes (rows) of the target table; feature tables cover the same range. */
  rows: number;
  featuresDataset?: string;
  targetsDataset?: string;
  /** First interval_time, ISO 8601; default "2020-01-01T00:00:00Z". */
  startTime?: string;
  onProgress?: (done: number, total: number) => void;
  /** Builds only the tables this accepts (quick tests); all of them when omitted. */
  only?: (table: SampleTable) => boolean;
}

export interface BuiltSample {
  /** Absolute path of the finished file. */
  path: string;
  tables: number;
  rows: number;
  bytes: number;
}

export const MAX_SAMPLE_ROWS = 1_000_000;
export const DEFAULT_SAMPLE_START = "2020-01-01T00:00:00Z";
/** DuckDB worker threads while building. */
const THREADS = 2;
/** DuckDB's buffer pool; its default (80 % of RAM) keeps every written block cached. */
const MEMORY_LIMIT = "1GB";
/**
 * Tables are committed in batches of about this many cells or columns, whichever comes first.
 * Measured: a commit per table (a WAL write and fsync each) was ~1.7x slower at 2,000 rows, and
 * one transaction for everything was ~2x slower at 300 rows (a huge final commit) and would
 * hold every not-yet-written table in memory.
 */
const COMMIT_EVERY_CELLS = 8_000_000;
const COMMIT_EVERY_COLUMNS = 2_000;
/**
 * Per-column inputs to hash() are `i + seed * 2^20` (i < 2^20): distinct columns never hash the
 * same input. Not hash(i, seed): DuckDB combines a multi-argument hash by XOR, so every column
 * would be the same bit pattern XOR a constant.
 */
const ROW_BITS = 20;
const VALUE_MASK = 2 ** ROW_BITS - 1;

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
const lit = (value: string) => `'${value.replaceAll("'", "''")}'`;

function seedTerm(table: string, column: string): string {
  // 32-bit seed shifted above the row bits; < 2^52, exact in a JS number and in BIGINT.
  return String(valueSeed(table, column) * 2 ** ROW_BITS);
}

/**
 * One DOUBLE column: a value from the low 20 bits of hash(i + seed), NULL when the top 20 bits
 * fall under the null rate. The hash appears twice; DuckDB computes it once (common
 * subexpression elimination), which halves the cost compared to two hashes.
 */
function valueExpr(table: string, column: string, nullRate: number, extraNull?: string): string {
  if (nullRate >= 1) return `CAST(NULL AS DOUBLE)`;
  const h = `hash(i + ${seedTerm(table, column)})`;
  const shape = nameHash(`${table}.${column}#shape`);
  const decimals = 3 + (shape % 3); // values of +-0.5 .. +-500
  const offset = ((shape >>> 4) % 2001) - 1000 - 2 ** (ROW_BITS - 1);
  const value = `(((${h} & ${VALUE_MASK}::UBIGINT)::BIGINT + ${offset})::DOUBLE / ${10 ** decimals})`;
  const threshold = Math.round(nullRate * 2 ** ROW_BITS);
  const conditions = [...(threshold > 0 ? [`(${h} >> ${64 - ROW_BITS}) < ${threshold}`] : []), ...(extraNull ? [extraNull] : [])];
  return conditions.length === 0 ? value : `CASE WHEN ${conditions.join(" OR ")} THEN NULL ELSE ${value} END`;
}

function tableSql(t: SampleTable, schema: string, rows: number, startEpochSeconds: number): string {
  const target = `${q(schema)}.${q(t.name)}`;
  const pairValue = `${lit(t.forPair ?? "")} AS "pair"`;
  if (!t.hasIntervalTime) {
    const cols = t.columns.map((c) => `${valueExpr(t.name, c.name, c.nullRate)} AS ${q(c.name)}`);
    return `CREATE TABLE ${target} AS SELECT ${[...cols, ...(t.hasPairColumn ? [pairValue] : [])].join(", ")} FROM range(${summaryRows(rows)}) AS r(i)`;
  }
  const tail = (column: string) => (t.dataset === "targets" ? `i >= ${rows - targetNullTailRows(column, rows)}` : undefined);
  const cols = t.columns.map((c) => `${valueExpr(t.name, c.name, c.nullRate, tail(c.name))} AS ${q(c.name)}`);
  const key = `to_timestamp(${startEpochSeconds} + i * 60) AS ${q(KEY_COLUMN)}`;
  // The pair column sits right after the key, except in lag tables where it comes last: readers
  // must go by name, not position.
  const select = !t.hasPairColumn ? [key, ...cols] : t.family === "lag" ? [key, ...cols, pairValue] : [key, pairValue, ...cols];
  const cov = tableCoverage(t);
  const where = cov.gapEvery === null ? "" : ` WHERE i % ${cov.gapEvery} <> ${cov.gapPhase}`;
  return `CREATE TABLE ${target} AS SELECT ${select.join(", ")} FROM range(${Math.min(cov.startOffset, rows)}, ${rows}) AS r(i)${where}`;
}

/** Removes our own leftover temp file and those of builders that no longer run. */
async function removeStaleTemps(finalPath: string): Promise<void> {
  const dir = path.dirname(finalPath);
  const stem = `${path.basename(finalPath)}.tmp-`;
  for (const entry of await readdir(dir)) {
    if (!entry.startsWith(stem)) continue;
    const pid = Number.parseInt(entry.slice(stem.length), 10);
    if (Number.isInteger(pid) && (pid === process.pid || !isAlive(pid))) await rm(path.join(dir, entry), { force: true });
  }
}

function checkOptions(opts: BuildSampleOptions): number {
  if (!PAIRS.includes(opts.pair)) throw new Error(`sample warehouse: unknown pair ${JSON.stringify(opts.pair)} (expected one of ${PAIRS.join(", ")})`);
  if (!Number.isInteger(opts.rows) || opts.rows < 1 || opts.rows > MAX_SAMPLE_ROWS) {
    throw new Error(`sample warehouse: rows must be an integer from 1 to ${MAX_SAMPLE_ROWS}, got ${opts.rows}`);
  }
  const start = Date.parse(opts.startTime ?? DEFAULT_SAMPLE_START);
  if (!Number.isFinite(start)) throw new Error(`sample warehouse: startTime ${JSON.stringify(opts.startTime)} is not a date`);
  return start / 1000;
}

/**
 * Builds the sample warehouse for `pair` at `path`, replacing any file there only once the new
 * one is complete. Deterministic: the same options give the same table contents.
 */
export async function buildSampleWarehouse(opts: BuildSampleOptions): Promise<BuiltSample> {
  const startEpochSeconds = checkOptions(opts);
  const finalPath = path.resolve(opts.path);
  const tmpPath = `${finalPath}.tmp-${process.pid}`;
  const schemas = { features: opts.featuresDataset ?? DEFAULT_FEATURES_DATASET, targets: opts.targetsDataset ?? DEFAULT_TARGETS_DATASET };
  const tables = sampleTables(opts.pair).filter((t) => opts.only?.(t) ?? true);

  await mkdir(path.dirname(finalPath), { recursive: true });
  await removeStaleTemps(finalPath);

  let instance: DuckDBInstance | undefined;
  let connection: DuckDBConnection | undefined;
  const closeAll = () => {
    connection?.disconnectSync();
    connection = undefined;
    instance?.closeSync();
    instance = undefined;
  };
  try {
    instance = await DuckDBInstance.create(tmpPath, { threads: String(THREADS), memory_limit: MEMORY_LIMIT });
    connection = await instance.connect();
    const c = connection;
    for (const schema of new Set([schemas.features, schemas.targets])) await c.run(`CREATE SCHEMA ${q(schema)}`);

    let cellsInTransaction = 0;
    let columnsInTransaction = 0;
    await c.run("BEGIN TRANSACTION");
    for (const [index, t] of tables.entries()) {
      const schema = schemas[t.dataset];
      try {
        await c.run(tableSql(t, schema, opts.rows, startEpochSeconds));
      } catch (err) {
        throw new Error(`sample warehouse: creating ${schema}.${t.name} failed: ${(err as Error).message}`, { cause: err });
      }
      cellsInTransaction += opts.rows * (t.columns.length + 2);
      columnsInTransaction += t.columns.length + 2;
      if (cellsInTransaction >= COMMIT_EVERY_CELLS || columnsInTransaction >= COMMIT_EVERY_COLUMNS || index === tables.length - 1) {
        await c.run("COMMIT");
        cellsInTransaction = 0;
        columnsInTransaction = 0;
        if (index < tables.length - 1) await c.run("BEGIN TRANSACTION");
      }
      opts.onProgress?.(index + 1, tables.length);
    }
    await c.run("CHECKPOINT");
    closeAll();
    if (existsSync(`${tmpPath}.wal`)) throw new Error(`sample warehouse: ${tmpPath}.wal is still there after the final checkpoint`);
    // A WAL left next to an older file at the final path would be replayed onto the new one.
    await rm(`${finalPath}.wal`, { force: true });
    await rename(tmpPath, finalPath);
  } catch (err) {
    try {
      closeAll();
    } catch {
      // The original error matters more than a failed close.
    }
    await rm(tmpPath, { force: true });
    await rm(`${tmpPath}.wal`, { force: true });
    throw err;
  }
  const { size } = await stat(finalPath);
  return { path: finalPath, tables: tables.length, rows: opts.rows, bytes: size };
}
