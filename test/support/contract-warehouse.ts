// The small warehouse the warehouse contract (test/contract/warehouse.contract.test.ts) runs every
// adapter over: a DuckDB file, read by the DuckDB adapter directly and by the BigQuery adapter
// through the stand-ins over it. Every value follows from the row number, so a test can say
// exactly what a read must return.
import { DuckDBInstance } from "@duckdb/node-api";

export const FEATURES = "contract_features";
export const TARGETS = "contract_targets";
export const ROWS = 120;
/** 2020-01-01T00:00:00Z in µs; row i is i minutes and i µs later (a millisecond round trip would show). */
export const BASE_US = 1_577_836_800_000_000n;
/** dup_eurusd's rows 10 and 40 repeat the key of the row before: two repeated keys. */
export const DUPLICATED_ROWS = [10, 40] as const;

export const keyOf = (i: number): bigint => BASE_US + BigInt(i) * 60_000_000n + BigInt(i);

/** The columns of each table, in ordinal order, with their DuckDB types (not alphabetical on purpose). */
export const TABLES = {
  [`${TARGETS}.targets_eurusd`]: [
    ["interval_time", "TIMESTAMP WITH TIME ZONE"],
    ["target_b", "BIGINT"],
    ["target_a", "DOUBLE"],
  ],
  [`${FEATURES}.agg_eurusd`]: [
    ["interval_time", "TIMESTAMP WITH TIME ZONE"],
    ["zeta", "DOUBLE"],
    ["alpha", "BIGINT"],
    ["note", "VARCHAR"],
  ],
  [`${FEATURES}.dup_eurusd`]: [
    ["interval_time", "TIMESTAMP WITH TIME ZONE"],
    ["x", "DOUBLE"],
  ],
  [`${FEATURES}.zoneless_eurusd`]: [
    ["interval_time", "TIMESTAMP"],
    ["v", "DOUBLE"],
  ],
} as const satisfies Record<string, ReadonlyArray<readonly [string, string]>>;

/** The expected values, row by row (null where the table holds NULL). */
export const expected = {
  targetA: (i: number): number | null => (i % 10 === 7 ? null : i / 8),
  targetB: (i: number): bigint => BigInt(i * 3),
  zeta: (i: number): number | null => (i % 5 === 0 ? null : i * 0.25 - 7),
  alpha: (i: number): bigint => BigInt(i * i - 50),
  note: (i: number): string | null => (i % 7 === 0 ? null : `n${i}`),
};

/** Writes the contract warehouse to `file` (which must not exist). */
export async function buildContractWarehouse(file: string): Promise<void> {
  const instance = await DuckDBInstance.create(file);
  const c = await instance.connect();
  const key = (i: string, type = "TIMESTAMPTZ") => `make_timestamp(${BASE_US}::BIGINT + (${i}) * 60000000 + (${i}))::${type}`;
  try {
    await c.run("SET TimeZone = 'UTC'");
    await c.run(`CREATE SCHEMA ${TARGETS}`);
    await c.run(`CREATE SCHEMA ${FEATURES}`);
    await c.run(`CREATE TABLE ${TARGETS}.targets_eurusd AS SELECT ${key("i")} AS interval_time, (i * 3)::BIGINT AS target_b,
      CASE WHEN i % 10 = 7 THEN NULL ELSE i / 8 END::DOUBLE AS target_a FROM range(${ROWS}) r(i)`);
    await c.run(`CREATE TABLE ${FEATURES}.agg_eurusd AS SELECT ${key("i")} AS interval_time,
      CASE WHEN i % 5 = 0 THEN NULL ELSE i * 0.25 - 7 END::DOUBLE AS zeta, (i * i - 50)::BIGINT AS alpha,
      CASE WHEN i % 7 = 0 THEN NULL ELSE 'n' || i END AS note FROM range(${ROWS}) r(i)`);
    await c.run(`CREATE TABLE ${FEATURES}.dup_eurusd AS SELECT ${key(`CASE WHEN i IN (${DUPLICATED_ROWS.join(", ")}) THEN i - 1 ELSE i END`)} AS interval_time,
      (i * 1.5)::DOUBLE AS x FROM range(${ROWS}) r(i)`);
    await c.run(`CREATE TABLE ${FEATURES}.zoneless_eurusd AS SELECT ${key("i", "TIMESTAMP")} AS interval_time, (i / 4)::DOUBLE AS v FROM range(${ROWS}) r(i)`);
    await c.run("CHECKPOINT");
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}
