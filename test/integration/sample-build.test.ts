// Builds small sample warehouses and checks them with DuckDB queries against the pure spec.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_FEATURES_DATASET, DEFAULT_TARGETS_DATASET, TARGET_COLUMNS } from "../../src/constants.ts";
import { buildSampleWarehouse, type BuiltSample } from "../../standins/sample/build.ts";
import { coveredRows, tableCoverage, trainingRowCount } from "../../standins/sample/coverage.ts";
import { sampleTables, type SampleTable } from "../../standins/sample/spec.ts";

const PAIR = "audusd";
const ROWS = 300;
const F = DEFAULT_FEATURES_DATASET;
const T = DEFAULT_TARGETS_DATASET;
const F2 = "features_copy";
const T2 = "targets_copy";
const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
const tables = sampleTables(PAIR);

let dir: string;
let fileA: string;
let fileB: string;
let builtA: BuiltSample;
let builtB: BuiltSample;
const progress: Array<[number, number]> = [];
let instance: DuckDBInstance;
let c: DuckDBConnection;

/** The rows `sql` selects; `Row` names the JS types its SELECT list gives (INTEGER a number, VARCHAR a string, ...). */
async function rowsOf<Row extends Record<string, unknown> = Record<string, unknown>>(sql: string): Promise<Row[]> {
  return (await c.runAndReadAll(sql)).getRowObjectsJS() as Row[];
}
async function one(sql: string): Promise<Record<string, unknown>> {
  const rows = await rowsOf(sql);
  expect(rows).toHaveLength(1);
  return rows[0]!;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "sample-build-test-"));
  fileA = path.join(dir, "a", "warehouse.duckdb");
  fileB = path.join(dir, "b.duckdb");
  // Leftovers the build must deal with: a file to replace, a WAL of that old file (it would be
  // replayed onto the new one), and the temp file of a builder that died.
  await mkdir(path.dirname(fileA), { recursive: true });
  await writeFile(fileA, "not a database");
  await writeFile(`${fileA}.wal`, "stale wal");
  await writeFile(`${fileA}.tmp-999999999`, "stale temp file of a dead builder");

  builtA = await buildSampleWarehouse({ path: fileA, pair: PAIR, rows: ROWS, onProgress: (done, total) => progress.push([done, total]) });
  builtB = await buildSampleWarehouse({ path: fileB, pair: PAIR, rows: ROWS, featuresDataset: F2, targetsDataset: T2 });

  instance = await DuckDBInstance.create(":memory:", { threads: "2" });
  c = await instance.connect();
  await c.run("SET TimeZone = 'UTC'");
  await c.run(`ATTACH '${fileA}' AS a (READ_ONLY)`);
  await c.run(`ATTACH '${fileB}' AS b (READ_ONLY)`);
}, 600_000);

afterAll(async () => {
  c?.closeSync();
  instance?.closeSync();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("buildSampleWarehouse", () => {
  it("reports what it wrote and leaves no temp or WAL file behind", async () => {
    expect(builtA).toEqual({ path: fileA, tables: tables.length, rows: ROWS, bytes: (await stat(fileA)).size });
    expect(builtA.bytes).toBeGreaterThan(1_000_000);
    expect(builtB.path).toBe(fileB);
    const leftovers = [...(await readdir(path.dirname(fileA))), ...(await readdir(dir))].filter((f) => f.includes(".tmp-") || f.endsWith(".wal"));
    expect(leftovers).toEqual([]);
  });

  it("reports progress table by table", () => {
    expect(progress).toHaveLength(tables.length);
    expect(progress[0]).toEqual([1, tables.length]);
    expect(progress.at(-1)).toEqual([tables.length, tables.length]);
  });

  it("creates every table of the spec, in the two schemas", async () => {
    const counts = await rowsOf(
      `SELECT table_schema AS s, count(*)::INTEGER AS n FROM information_schema.tables WHERE table_catalog = 'a' GROUP BY 1 ORDER BY 1`,
    );
    const features = tables.filter((t) => t.dataset === "features").length;
    expect(counts).toEqual([
      { s: T, n: tables.length - features },
      { s: F, n: features },
    ]);
    const own = await one(
      `SELECT count(*)::INTEGER AS n FROM information_schema.tables WHERE table_catalog = 'a' AND table_schema = '${F}'
         AND (table_name LIKE '%${PAIR}%' OR regexp_matches(table_name, '^(tri|mkt|var|csi)_'))`,
    );
    expect(own.n).toBe(669);
    const schemasB = await rowsOf(`SELECT DISTINCT table_schema AS s FROM information_schema.tables WHERE table_catalog = 'b' ORDER BY 1`);
    expect(schemasB.map((r) => r.s)).toEqual([F2, T2]);
  });

  it("gives every table the spec's columns, in order, with the right types", async () => {
    const listed = await rowsOf<{ s: string; t: string; cols: string[]; types: string[] }>(
      `SELECT table_schema AS s, table_name AS t, list(column_name ORDER BY ordinal_position) AS cols, list(data_type ORDER BY ordinal_position) AS types
       FROM information_schema.columns WHERE table_catalog = 'a' GROUP BY 1, 2`,
    );
    const byName = new Map(listed.map((r) => [`${r.s}.${r.t}`, r]));
    const wrong: string[] = [];
    for (const t of tables) {
      const r = byName.get(`${t.dataset === "features" ? F : T}.${t.name}`);
      if (!r) {
        wrong.push(`${t.name}: missing`);
        continue;
      }
      const { cols, types } = r;
      const typeOf = new Map(cols.map((col, i) => [col, types[i]]));
      const features = cols.filter((col) => col !== "interval_time" && col !== "pair");
      if (JSON.stringify(features) !== JSON.stringify(t.columns.map((col) => col.name))) wrong.push(`${t.name}: columns`);
      if (typeOf.has("interval_time") !== t.hasIntervalTime || typeOf.has("pair") !== t.hasPairColumn) wrong.push(`${t.name}: key/pair`);
      if (t.hasIntervalTime && typeOf.get("interval_time") !== "TIMESTAMP WITH TIME ZONE") wrong.push(`${t.name}: key type ${typeOf.get("interval_time")}`);
      if (t.hasPairColumn && typeOf.get("pair") !== "VARCHAR") wrong.push(`${t.name}: pair type`);
      if (features.some((col) => typeOf.get(col) !== "DOUBLE")) wrong.push(`${t.name}: value types`);
    }
    expect(wrong).toEqual([]);
  });

  it("has the target table with its 49 targets, the last ~1 % of target_bqx45_h15 null", async () => {
    const cols = await rowsOf(
      `SELECT column_name AS c FROM information_schema.columns WHERE table_catalog = 'a' AND table_schema = '${T}' AND table_name = 'targets_${PAIR}' AND column_name LIKE 'target_%' ORDER BY ordinal_position`,
    );
    expect(cols.map((r) => r.c)).toEqual([...TARGET_COLUMNS]);
    const r = await one(
      `SELECT count(*)::INTEGER AS n, count(target_bqx45_h15)::INTEGER AS h15, count(target_bqx45_h105)::INTEGER AS h105,
              min(interval_time)::VARCHAR AS first, max(interval_time)::VARCHAR AS last,
              max(interval_time) FILTER (WHERE target_bqx45_h15 IS NOT NULL) < min(interval_time) FILTER (WHERE target_bqx45_h15 IS NULL) AS tail,
              count(DISTINCT pair)::INTEGER AS pairs, min(pair) AS pair
       FROM a.${q(T)}.${q(`targets_${PAIR}`)}`,
    );
    expect(r).toEqual({
      n: ROWS,
      h15: trainingRowCount(ROWS),
      h105: expect.any(Number),
      first: "2020-01-01 00:00:00+00",
      last: "2020-01-01 04:59:00+00",
      tail: true,
      pairs: 1,
      pair: PAIR,
    });
    expect(r.h15).toBeLessThan(ROWS);
    expect(r.h105 as number).toBeLessThan(r.h15 as number);
  });

  it("has no duplicate interval_time in any table, the predicted row counts, and 1-minute steps", async () => {
    const keyed = tables.filter((t) => t.hasIntervalTime);
    const sql = keyed
      .map(
        (t, i) =>
          `SELECT ${i} AS i, count(*)::INTEGER AS n, count(DISTINCT interval_time)::INTEGER AS d,
                  (epoch(max(interval_time)) - epoch(min(interval_time))) / 60 AS span
           FROM a.${q(t.dataset === "features" ? F : T)}.${q(t.name)}`,
      )
      .join(" UNION ALL ");
    const results = await rowsOf<{ i: number; n: number; d: number; span: number }>(sql);
    expect(results).toHaveLength(keyed.length);
    const wrong: string[] = [];
    let partial = 0;
    for (const r of results) {
      const t = keyed[r.i]!;
      const expected = coveredRows(tableCoverage(t), ROWS);
      if (r.n !== expected) wrong.push(`${t.name}: ${r.n} rows, expected ${expected}`);
      if (r.d !== r.n) wrong.push(`${t.name}: ${r.n - r.d} duplicate keys`);
      if (r.span >= ROWS) wrong.push(`${t.name}: spans ${r.span} minutes`);
      if (r.n < ROWS) partial++;
    }
    expect(wrong).toEqual([]);
    // Enough tables start late or miss minutes that a left join produces nulls.
    expect(partial).toBeGreaterThan(100);
  });

  it("gives the summaries rows without interval_time", async () => {
    for (const t of tables.filter((x) => !x.hasIntervalTime)) {
      const r = await one(`SELECT count(*)::INTEGER AS n FROM a.${q(F)}.${q(t.name)}`);
      expect(r.n).toBeGreaterThan(0);
    }
  });

  it("puts roughly 53 % nulls into the corr tables and leaves the 16 entirely null columns empty", async () => {
    const corr = tables.filter((t) => t.family === "corr" && t.forPair === PAIR);
    const parts = corr.map((t) => {
      const nonNull = t.columns.map((col) => `count(${q(col.name)})`).join(" + ");
      return `SELECT count(*) * ${t.columns.length} AS cells, ${nonNull} AS filled FROM a.${q(F)}.${q(t.name)}`;
    });
    const r = await one(`SELECT sum(cells)::DOUBLE AS cells, sum(filled)::DOUBLE AS filled FROM (${parts.join(" UNION ALL ")})`);
    const nullShare = 1 - (r.filled as number) / (r.cells as number);
    expect(nullShare).toBeGreaterThan(0.5);
    expect(nullShare).toBeLessThan(0.56);

    const entirelyNull = corr.flatMap((t) => t.columns.filter((col) => col.nullRate === 1).map((col) => [t, col.name] as const));
    expect(entirelyNull).toHaveLength(16);
    const counts = await rowsOf(
      entirelyNull.map(([t, col]) => `SELECT count(${q(col)})::INTEGER AS n, count(*)::INTEGER AS rows FROM a.${q(F)}.${q(t.name)}`).join(" UNION ALL "),
    );
    for (const row of counts) {
      expect(row.n).toBe(0);
      expect(row.rows).toBeGreaterThan(0);
    }
  });

  it("keeps pair-level families nearly complete and fills the pair column", async () => {
    const t = tables.find((x) => x.name === `reg_${PAIR}`)!;
    const nonNull = t.columns.map((col) => `count(${q(col.name)})`).join(" + ");
    const r = await one(`SELECT count(*) * ${t.columns.length} AS cells, ${nonNull} AS filled, min(pair) AS lo, max(pair) AS hi FROM a.${q(F)}.${q(t.name)}`);
    expect(1 - Number(r.filled) / Number(r.cells)).toBeLessThan(0.02);
    expect([r.lo, r.hi]).toEqual([PAIR, PAIR]);
    const decoy = tables.find((x) => x.forPair !== PAIR && x.forPair !== null && x.hasPairColumn && x.dataset === "features")!;
    const d = await one(`SELECT min(pair) AS p FROM a.${q(F)}.${q(decoy.name)}`);
    expect(d.p).toBe(decoy.forPair);
  });

  it("is deterministic: a second build holds the same values", async () => {
    const checked: SampleTable[] = [
      tables.find((t) => t.name === `targets_${PAIR}`)!,
      tables.find((t) => t.name === `corr_etf_idx_${PAIR}_spy`)!,
      tables.find((t) => t.family === "tri" && t.name.startsWith("tri_reg_"))!,
      tables.find((t) => t.family === "cov")!,
      tables.find((t) => t.family === "lag")!,
    ];
    for (const t of checked) {
      const digest = async (catalog: string, schema: string) =>
        await one(`SELECT md5(string_agg(x::VARCHAR, '|' ORDER BY interval_time)) AS h, count(*)::INTEGER AS n FROM ${catalog}.${q(schema)}.${q(t.name)} x`);
      const [schemaA, schemaB] = t.dataset === "features" ? [F, F2] : [T, T2];
      const a = await digest("a", schemaA);
      expect(a.n).toBeGreaterThan(0);
      expect(await digest("b", schemaB), t.name).toEqual(a);
    }
    // Different columns hold different values.
    const t = tables.find((x) => x.name === `agg_${PAIR}`)!;
    const [c1, c2] = [t.columns[0]!.name, t.columns[1]!.name];
    const r = await one(`SELECT count(*) FILTER (WHERE ${q(c1)} = ${q(c2)})::INTEGER AS same FROM a.${q(F)}.${q(t.name)}`);
    expect(r.same as number).toBeLessThan(3);
  });

  it("rejects bad options without leaving a file", async () => {
    const target = path.join(dir, "bad.duckdb");
    await expect(buildSampleWarehouse({ path: target, pair: "eurxxx", rows: 10 })).rejects.toThrow(/unknown pair/);
    await expect(buildSampleWarehouse({ path: target, pair: PAIR, rows: 0 })).rejects.toThrow(/rows/);
    await expect(buildSampleWarehouse({ path: target, pair: PAIR, rows: 10, startTime: "yesterday-ish" })).rejects.toThrow(/startTime/);
    expect(existsSync(target)).toBe(false);
  });
});
