// A smaller copy of a warehouse for quick runs: the target table plus an evenly spread subset of
// the feature tables a pair's discovery picks (every family stays represented), optionally with
// the tables discovery skips. Written under a temporary name and renamed when complete.
// No vitest imports: bench:extract uses it from a plain Node process.
import { rename, rm } from "node:fs/promises";
import { DuckDBInstance } from "@duckdb/node-api";
import { planTables } from "../src/discovery.ts";
import { DEFAULT_FEATURES_DATASET, DEFAULT_TARGETS_DATASET } from "../src/constants.ts";
import { DuckDBWarehouse } from "../src/warehouse/duckdb.ts";

export interface SubsetOptions {
  source: string;
  out: string;
  pair: string;
  /** Feature tables to keep (at most what discovery finds). */
  features: number;
  /** Also copy the tables discovery skips (e.g. without interval_time), so skipping stays covered. */
  keepSkipped?: boolean;
}

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
const lit = (value: string) => `'${value.replaceAll("'", "''")}'`;

/** Returns the feature tables kept, in name order. */
export async function subsetWarehouse(opts: SubsetOptions): Promise<string[]> {
  const F = DEFAULT_FEATURES_DATASET;
  const T = DEFAULT_TARGETS_DATASET;
  const wh = await DuckDBWarehouse.open(opts.source);
  let plan;
  try {
    plan = planTables(opts.pair, { dataset: F, tables: await wh.listTables(F) }, { dataset: T, tables: await wh.listTables(T) }, wh.keyTypes);
  } finally {
    await wh.close();
  }
  const all = plan.features.map((t) => t.table).sort();
  const n = Math.max(1, Math.min(opts.features, all.length));
  const kept = Array.from({ length: n }, (_, i) => all[Math.floor((i * all.length) / n)]!);
  const copies: Array<[string, string]> = [[T, plan.target.table], ...kept.map((t): [string, string] => [F, t])];
  if (opts.keepSkipped) for (const s of plan.skipped) copies.push([s.dataset, s.table]);

  const tmp = `${opts.out}.tmp-${process.pid}`;
  await rm(tmp, { force: true });
  const instance = await DuckDBInstance.create(tmp);
  const c = await instance.connect();
  try {
    await c.run(`ATTACH ${lit(opts.source)} AS src (READ_ONLY)`);
    for (const schema of [F, T]) await c.run(`CREATE SCHEMA ${q(schema)}`);
    for (const [schema, table] of copies) await c.run(`CREATE TABLE ${q(schema)}.${q(table)} AS SELECT * FROM src.${q(schema)}.${q(table)}`);
    await c.run("DETACH src");
    await c.run("CHECKPOINT");
  } finally {
    c.closeSync();
    instance.closeSync();
  }
  await rm(`${tmp}.wal`, { force: true });
  await rename(tmp, opts.out);
  return kept;
}
