// A warehouse of a few tables per pair, for tests that run the whole job several times (fan-out
// across tasks, the container contract, the operator scripts): seconds per run instead of the
// sample's 668 tables. Each pair has its own row count and its own values (pair index x 1000 +
// row), so a file built for the wrong pair cannot pass for the right one.
// No vitest imports: scripts/bench/cold-start.ts uses it from a plain Node process.
import { rename, rm } from "node:fs/promises";
import { DuckDBInstance } from "@duckdb/node-api";
import { DEFAULT_FEATURES_DATASET, DEFAULT_TARGETS_DATASET, KEY_COLUMN, PAIRS, TARGET_COLUMNS, TARGET_ROW_FILTER_COLUMN } from "../src/constants.ts";

export interface TinyWarehouseOptions {
  path: string;
  pairs: readonly string[];
  /** Rows of each pair's target table; 40 + 10 x (its position in `pairs`) when omitted. */
  rows?: (pair: string, position: number) => number;
  /** Also a wide table per pair, `reg_<pair>` with this many DOUBLE columns (nulls every 7th row of each), so small budgets slice it. */
  wideColumns?: number;
}

export interface TinyPair {
  /** Rows in the target table. */
  rows: number;
  /** Rows of the training file: the target rows where target_bqx45_h15 is not null. */
  trainingRows: number;
  /** Columns of the training file: key, 49 targets, 3 pair features, 3 shared features. */
  columns: number;
  /** The value of `agg_x` in the training file's first row. */
  firstAggX: number;
}

/** Settings that let validation pass on this small warehouse (the defaults are production's). */
export const TINY_VALIDATION_ENV = Object.freeze({ MIN_ROWS: "20", MIN_COLUMNS: "50" });
/** Target rows whose target_bqx45_h15 is null (the last ones), as in the real tables. */
const NULL_TAIL_ROWS = 2;
const START_EPOCH_SECONDS = Date.parse("2020-01-02T00:00:00Z") / 1000;

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;

export async function buildTinyWarehouse(opts: TinyWarehouseOptions): Promise<Record<string, TinyPair>> {
  const F = q(DEFAULT_FEATURES_DATASET);
  const T = q(DEFAULT_TARGETS_DATASET);
  // Plain DOUBLE and BIGINT columns, as BigQuery's FLOAT64/INT64 features (no DECIMAL).
  const key = (i = "i") => `to_timestamp(${START_EPOCH_SECONDS} + ${i} * 60) AS ${q(KEY_COLUMN)}`;
  const tmp = `${opts.path}.tmp-${process.pid}`;
  await rm(tmp, { force: true });
  const instance = await DuckDBInstance.create(tmp);
  const c = await instance.connect();
  const result: Record<string, TinyPair> = {};
  try {
    await c.run(`CREATE SCHEMA ${F}`);
    await c.run(`CREATE SCHEMA ${T}`);
    const longest = Math.max(...opts.pairs.map((pair, position) => opts.rows?.(pair, position) ?? 40 + 10 * position));
    // Shared families: picked up by every pair, whatever their names say.
    await c.run(`CREATE TABLE ${F}.tri_agg_bqx_eur_usd_gbp AS SELECT ${key()}, (i * 0.5)::DOUBLE AS spread, i % 7 AS phase FROM range(${longest}) r(i)`);
    await c.run(`CREATE TABLE ${F}.var_agg_bqx_eur AS SELECT ${key()}, (i * 0.25)::DOUBLE AS level FROM range(${longest}) r(i)`);
    // No interval_time: discovery must skip it with a logged reason.
    await c.run(`CREATE TABLE ${F}.mkt_summary AS SELECT i AS n_pairs FROM range(3) r(i)`);
    for (const [position, pair] of opts.pairs.entries()) {
      if (!PAIRS.includes(pair)) throw new Error(`tiny warehouse: unknown pair ${JSON.stringify(pair)}`);
      const rows = opts.rows?.(pair, position) ?? 40 + 10 * position;
      const base = PAIRS.indexOf(pair) * 1000;
      const targets = TARGET_COLUMNS.map((column, k) =>
        column === TARGET_ROW_FILTER_COLUMN
          ? `CASE WHEN i >= ${rows - NULL_TAIL_ROWS} THEN NULL ELSE ${base} + i + ${k} / 100 END AS ${q(column)}`
          : `${base} + i + ${k} / 100 AS ${q(column)}`,
      );
      await c.run(`CREATE TABLE ${T}.${q(`targets_${pair}`)} AS SELECT ${key()}, ${targets.join(", ")} FROM range(${rows}) r(i)`);
      await c.run(`CREATE TABLE ${F}.${q(`agg_${pair}`)} AS SELECT ${key()}, '${pair}' AS pair, ${base} + i AS x, ${base} - i AS y FROM range(${rows}) r(i)`);
      // Every other minute missing: the left join must keep the target rows and fill nulls.
      await c.run(`CREATE TABLE ${F}.${q(`mom_bqx_${pair}`)} AS SELECT ${key()}, (${base} + i) * 2 AS z FROM range(${rows}) r(i) WHERE i % 2 = 0`);
      const wide = opts.wideColumns ?? 0;
      if (wide > 0) {
        const cols = Array.from(
          { length: wide },
          (_, k) => `CASE WHEN (i + ${k}) % 7 = 0 THEN NULL ELSE ((${base} + i) * ${k + 1} + 0.5)::DOUBLE END AS ${q(`w${k}`)}`,
        );
        // Rows in shuffled order, and every fifth minute missing: slices must not depend on the storage order.
        await c.run(`CREATE TABLE ${F}.${q(`reg_${pair}`)} AS SELECT ${key()}, ${cols.join(", ")} FROM range(${rows}) r(i) WHERE i % 5 <> 3 ORDER BY hash(i)`);
      }
      result[pair] = { rows, trainingRows: rows - NULL_TAIL_ROWS, columns: 1 + TARGET_COLUMNS.length + 3 + 3 + wide, firstAggX: base };
    }
    await c.run("CHECKPOINT");
  } finally {
    c.closeSync();
    instance.closeSync();
  }
  await rm(`${tmp}.wal`, { force: true });
  await rename(tmp, opts.path);
  return result;
}
