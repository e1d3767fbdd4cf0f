// The whole job on a generated warehouse, checked value by value against the same join done
// independently by DuckDB SQL on the warehouse.
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { DuckDBInstance, type DuckDBConnection } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TARGET_COLUMNS } from "../../src/constants.ts";
import { buildSampleWarehouse } from "../../standins/sample/build.ts";
import { sampleTables } from "../../standins/sample/spec.ts";
import { varchar } from "../../standins/duckdb-text.ts";
import { runJob, type JobRun } from "../support/run-job.ts";

const PAIR = "eurusd";
const ROWS = 400;
const F = "bqx_ml_v3_features_v2";
const T = "bqx_ml_v3_analytics_v2";
let dir: string;
let warehouse: string;

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
/** The prefix rule, written again here so the test does not trust the code under test. */
function expectedPrefix(table: string): string {
  if (/^(tri|mkt|var|csi)_/.test(table)) return table;
  return table
    .split("_")
    .filter((p) => p !== PAIR)
    .join("_");
}

function envFor(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TARGET_PAIR: PAIR,
    WAREHOUSE: warehouse,
    OUTPUT_URI: path.join(dir, name, "bucket"),
    WORK_DIR: path.join(dir, name, "work"),
    MIN_ROWS: "100",
    MAX_WORKERS: "2",
    ...extra,
  };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "pipeline-test-"));
  warehouse = path.join(dir, "warehouse.duckdb");
  await buildSampleWarehouse({ path: warehouse, pair: PAIR, rows: ROWS });
}, 600_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function withDuckDB<R>(fn: (c: DuckDBConnection) => Promise<R>): Promise<R> {
  const instance = await DuckDBInstance.create(":memory:");
  const c = await instance.connect();
  try {
    await c.run("SET TimeZone = 'UTC'");
    return await fn(c);
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

describe("the six-stage pipeline on the embedded backend", () => {
  let run: JobRun;
  const bucket = () => path.join(dir, "full", "bucket");

  beforeAll(async () => {
    // Small row groups, so the file is assembled from parts of several row groups each and the
    // comparison below covers the row-group boundaries.
    run = await runJob(envFor("full", { MEMORY_BUDGET: "128MiB", ROW_GROUP_ROWS: "100" }));
  }, 600_000);

  it("exits 0 with the training file, its manifest, its run report and the index in the bucket, and removes every staged part", async () => {
    expect(run.stderr).toBe("");
    expect(run.code, run.stdout.slice(-3000)).toBe(0);
    // .bqx-meta/ holds the local bucket's object metadata (pair, rows, columns, schema_sha256).
    expect((await readdir(bucket())).sort()).toEqual([
      ".bqx-meta",
      "reports",
      `training_${PAIR}.manifest.json`,
      `training_${PAIR}.parquet`,
      `training_${PAIR}.report.html`,
    ]);
    expect(await readdir(path.join(bucket(), "reports"))).toEqual(["index.html"]);
    expect(existsSync(path.join(dir, "full", "work", PAIR))).toBe(false);
    expect(run.lines.find((l) => l.stage === "cleanup" && l.stagedRemoved !== undefined)).toMatchObject({ stagedRemoved: 2 * 668 + 2, stagedLeft: 0 });
  });

  it("logs Cloud Logging lines, the pool size with its source, progress and a final summary", () => {
    for (const line of run.lines) {
      expect(line).toHaveProperty("severity");
      expect(line).toHaveProperty("message");
    }
    const messages = run.lines.map((l) => String(l.message));
    expect(messages).toContainEqual(
      expect.stringMatching(/^extraction pool: 2 workers \(from MAX_WORKERS\) x 1 tables each, within MEMORY_BUDGET 128 MiB \(MEMORY_BUDGET\)$/),
    );
    expect(messages.filter((m) => /^skipping mkt_\w+_summary: no interval_time column/.test(m))).toHaveLength(2);
    expect(messages).toContainEqual(expect.stringMatching(/^\d+ training rows in 4 row groups of 100 rows: as ROW_GROUP_ROWS asks/));
    expect(messages).toContainEqual(expect.stringMatching(/^extracted 667\/667 \(\d+\.\d\/min, ETA 0\.0s\)$/));
    expect(messages).toContainEqual(expect.stringMatching(/^composed [\d.]+ MiB in 1 compose calls; size and CRC32C \S+ match the prediction from the parts$/));
    const last = run.lines.at(-1)!;
    expect(last.message).toMatch(/^done: .*training_eurusd\.parquet \(\d+ rows x 17038 columns/);
    expect(Object.keys(last.durations as object)).toEqual(["extract", "merge", "validate", "upload", "report", "cleanup"]);
    expect(last.report).toBe(path.join(bucket(), `training_${PAIR}.report.html`));
    const merge = run.lines.find((l) => l.stage === "merge" && l.rowGroups !== undefined)!;
    expect(merge).toMatchObject({ rowGroups: 4, parts: 668 });
  });

  it("writes a manifest with tables, rows, columns, checksums, durations and the effective config, the same as the one in the file's footer", async () => {
    const manifest = JSON.parse(await readFile(path.join(bucket(), `training_${PAIR}.manifest.json`), "utf8"));
    expect(manifest.pair).toBe(PAIR);
    expect(manifest.columns).toBe(17_038);
    expect(manifest.rowGroups).toBe(4);
    expect(manifest.tables.features).toHaveLength(667);
    expect(manifest.tables.features.every((t: { rows: number }) => t.rows > 0)).toBe(true);
    expect(manifest.run.tables.every((t: { parts: number; reusedParts: number }) => t.parts === 1 && t.reusedParts === 0)).toBe(true);
    expect(manifest.tables.skipped).toHaveLength(2);
    expect(manifest.file.crc32c).toMatch(/^[A-Za-z0-9+/]{6}==$/);
    expect(manifest.file.bytes).toBe((await readFile(path.join(bucket(), `training_${PAIR}.parquet`))).length);
    expect(manifest.file.componentCount).toBe(2 + 668);
    expect(Object.keys(manifest.run.stageSeconds)).toEqual(["extract", "merge", "validate"]);
    expect(manifest.run.config.MEMORY_BUDGET).toBe(128 * 1024 ** 2);
    const { readRawFooter, summarizeFooter } = await import("../../src/parquet/index.ts");
    const raw = await readRawFooter(path.join(bucket(), `training_${PAIR}.parquet`));
    const inFooter = JSON.parse(summarizeFooter(raw.thrift, raw.fileBytes).keyValueMetadata["bqx.manifest"]!);
    // The footer holds the content's manifest; the object adds how this run built it and the file's identity.
    const { file, run: built, ...content } = manifest;
    expect(inFooter).toEqual(content);
    expect(built.execution).toBeUndefined();
    expect(file.object).toBe(`training_${PAIR}.parquet`);
    expect(manifest.query).toEqual({
      TARGET_PAIR: PAIR,
      FEATURES_DATASET: F,
      TARGETS_DATASET: T,
      DATE_FROM: "2020-01-01",
      DATE_TO: "2024-12-31",
      ROW_LIMIT: null,
      ROW_GROUP_ROWS: 100,
    });
    expect(manifest.validation.horizons).toEqual(Object.fromEntries([15, 30, 45, 60, 75, 90, 105].map((h) => [`target_bqx45_h${h}`, true])));
    expect(manifest.validation.warnings.join("\n")).toMatch(/corr: 16 entirely null column/);
  });

  it("holds exactly the left join of every table onto the target rows, value by value", async () => {
    const file = path.join(bucket(), `training_${PAIR}.parquet`);
    const features = sampleTables(PAIR)
      .filter((t) => t.dataset === "features" && t.hasIntervalTime && (t.forPair === PAIR || t.forPair === null))
      .sort((a, b) => (a.name < b.name ? -1 : 1));
    expect(features).toHaveLength(667);

    await withDuckDB(async (c) => {
      await c.run(`ATTACH '${warehouse}' AS wh (READ_ONLY)`);
      await c.run(`CREATE TABLE keys AS SELECT interval_time FROM wh.${q(T)}.${q(`targets_${PAIR}`)} WHERE target_bqx45_h15 IS NOT NULL`);
      const out = `read_parquet('${file}')`;
      // Row order: the file's rows are the target's rows in time order.
      const order = await c.runAndReadAll(
        `SELECT count(*) AS n FROM (SELECT interval_time, file_row_number AS r FROM read_parquet('${file}', file_row_number = true)) o
         FULL JOIN (SELECT interval_time, row_number() OVER (ORDER BY interval_time) - 1 AS r FROM keys) k USING (r)
         WHERE o.interval_time IS DISTINCT FROM k.interval_time`,
      );
      expect(Number(order.getRowObjectsJS()[0]!.n)).toBe(0);
      const count = Number((await c.runAndReadAll("SELECT count(*) AS n FROM keys")).getRowObjectsJS()[0]!.n);
      expect(count).toBeGreaterThan(ROWS * 0.9);
      expect(count).toBeLessThan(ROWS);

      const outColumns = (await c.runAndReadAll(`SELECT name FROM parquet_schema('${file}') WHERE num_children IS NULL OR num_children = 0`))
        .getRowObjectsJS()
        .map((r) => varchar(r.name));
      const expected = new Map<string, string>(); // output column -> source expression
      for (const t of TARGET_COLUMNS) expected.set(t, `targets_${PAIR}.${t}`);
      for (const t of features) for (const col of t.columns) expected.set(`${expectedPrefix(t.name)}_${col.name}`, `${t.name}.${col.name}`);
      expect(outColumns).toEqual(["interval_time", ...expected.keys()]);

      // Every cell compared by value: per column, a sum of hash(key, value) over all rows, once
      // for the file and once for the join computed here; NULL hashes like any other value.
      const fingerprint = (column: string, source = "o") => `sum(hash(${source}.interval_time, ${source}.${q(column)}))::VARCHAR`;
      const fileSums = new Map<string, string>();
      const names = [...expected.keys()];
      for (let i = 0; i < names.length; i += 2_000) {
        const chunk = names.slice(i, i + 2_000);
        const row = (await c.runAndReadAll(`SELECT ${chunk.map((n, j) => `${fingerprint(n)} AS c${j}`).join(", ")} FROM ${out} o`)).getRows()[0]!;
        chunk.forEach((n, j) => fileSums.set(n, String(row[j])));
      }
      const joinedSums = new Map<string, string>();
      const sourceTables = [{ dataset: T, name: `targets_${PAIR}`, columns: TARGET_COLUMNS.map((name) => ({ name, out: name })) }].concat(
        features.map((t) => ({
          dataset: F,
          name: t.name,
          columns: t.columns.map((col) => ({ name: col.name, out: `${expectedPrefix(t.name)}_${col.name}` })),
        })),
      );
      for (const t of sourceTables) {
        const select = t.columns.map((col) => `sum(hash(k.interval_time, f.${q(col.name)}))::VARCHAR`).join(", ");
        const row = (await c.runAndReadAll(`SELECT ${select} FROM keys k LEFT JOIN wh.${q(t.dataset)}.${q(t.name)} f USING (interval_time)`)).getRows()[0]!;
        t.columns.forEach((col, j) => joinedSums.set(col.out, String(row[j])));
      }
      const differing = names.filter((n) => fileSums.get(n) !== joinedSums.get(n));
      expect(differing).toEqual([]);
      expect(fileSums.size).toBe(17_037);

      // The comparison is not vacuous: the file holds real values and real nulls.
      const agg = features.find((t) => t.name === `agg_bqx_${PAIR}`)!;
      const cells = await c.runAndReadAll(`SELECT count(${q(`agg_bqx_${agg.columns[0]!.name}`)}) AS v, count(*) AS n FROM ${out}`);
      const { v, n } = cells.getRowObjectsJS()[0]!;
      expect(Number(v)).toBeGreaterThan(0);
      expect(Number(v)).toBeLessThanOrEqual(Number(n));
    });
  });
});

describe("resuming and refusing", () => {
  it("publishes nothing when validation fails, and a later attempt reuses every staged part instead of extracting again", async () => {
    const first = await runJob(envFor("resume", { MIN_ROWS: "1000000" }));
    expect(first.code).toBe(1);
    expect(first.stdout).toMatch(/rows: \d+ < MIN_ROWS 1000000/);
    const bucketDir = path.join(dir, "resume", "bucket");
    expect((await readdir(bucketDir)).filter((n) => n.startsWith("training_"))).toEqual([]);
    expect((await readdir(path.join(bucketDir, "_staging", PAIR, "parts"))).length).toBe(2 * 668);
    const second = await runJob(envFor("resume"));
    expect(second.code, second.stdout.slice(-2000)).toBe(0);
    expect(second.lines.map((l) => l.message)).toContainEqual(expect.stringMatching(/^reusing 668 parts staged by an earlier attempt in /));
    expect(second.lines.find((l) => l.stage === "extract" && l.extracted !== undefined)).toMatchObject({ extracted: 0, reused: 668 });
    expect(existsSync(path.join(bucketDir, "_staging"))).toBe(false);
  });

  it("fails with a clear message when the target table has no rows in the date range", async () => {
    const r = await runJob(envFor("norows", { DATE_FROM: "2031-01-01", DATE_TO: "2031-12-31" }));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/target table bqx_ml_v3_analytics_v2\.targets_eurusd has no rows with target_bqx45_h15 in 2031-01-01\.\.2031-12-31/);
    expect(existsSync(path.join(dir, "norows", "bucket", `training_${PAIR}.parquet`))).toBe(false);
  });

  it("fails with exit 2 and one line per problem when TARGET_PAIR is missing", async () => {
    const r = await runJob({ WAREHOUSE: warehouse, MEMORY_BUDGET: "lots" });
    expect(r.code).toBe(2);
    const line = JSON.parse(r.stderr.trim());
    expect(line.severity).toBe("ERROR");
    expect(line.problems).toEqual([expect.stringMatching(/^TARGET_PAIR: /), expect.stringMatching(/^MEMORY_BUDGET: /)]);
  });

  it("fails naming the file and the fix when the warehouse does not exist", async () => {
    const r = await runJob(envFor("nowarehouse", { WAREHOUSE: path.join(dir, "missing.duckdb") }));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/warehouse file .*missing\.duckdb does not exist.*npm run sample/);
    expect(existsSync(path.join(dir, "nowarehouse", "work", PAIR, "parts"))).toBe(false);
  });
});

describe("a table wider than its share of the budget", () => {
  it("is aligned in slices of whole row groups, staged as several parts, and the file still equals the left join", async () => {
    const { buildTinyWarehouse } = await import("../../standins/tiny-warehouse.ts");
    const wide = path.join(dir, "wide.duckdb");
    await buildTinyWarehouse({ path: wide, pairs: [PAIR], rows: () => 30_000, wideColumns: 200 });
    const out = path.join(dir, "sliced", "bucket");
    // 64 MiB over 2 workers: ~4,100 rows of 201 columns a slice, so 2 row groups of 2,000 a part.
    const r = await runJob({
      TARGET_PAIR: PAIR,
      WAREHOUSE: wide,
      OUTPUT_URI: out,
      WORK_DIR: path.join(dir, "sliced", "work"),
      MIN_ROWS: "100",
      MIN_COLUMNS: "50",
      MAX_WORKERS: "2",
      MEMORY_BUDGET: "64MiB",
      ROW_GROUP_ROWS: "2000",
    });
    expect(r.code, r.stdout.slice(-2000)).toBe(0);
    const extract = r.lines.find((l) => l.stage === "extract" && l.parts !== undefined)!;
    expect(extract).toMatchObject({ tables: 6, rowGroups: 15 });
    expect(extract.parts as number).toBeGreaterThanOrEqual(5 + 8);
    const file = path.join(out, `training_${PAIR}.parquet`);
    await withDuckDB(async (c) => {
      await c.run(`ATTACH '${wide}' AS wh (READ_ONLY)`);
      const columns = Array.from({ length: 200 }, (_, k) => `w${k}`);
      const fileSums = (
        await c.runAndReadAll(
          `SELECT count(*)::INTEGER AS n, ${columns.map((w) => `sum(hash(interval_time, ${q(`reg_${w}`)}))::VARCHAR AS ${w}`).join(", ")} FROM read_parquet('${file}')`,
        )
      ).getRowObjectsJS()[0]!;
      const joinSums = (
        await c.runAndReadAll(
          `SELECT count(*)::INTEGER AS n, ${columns.map((w) => `sum(hash(k.interval_time, f.${q(w)}))::VARCHAR AS ${w}`).join(", ")}
         FROM (SELECT interval_time FROM wh.${q(T)}.${q(`targets_${PAIR}`)} WHERE target_bqx45_h15 IS NOT NULL) k LEFT JOIN wh.${q(F)}.${q(`reg_${PAIR}`)} f USING (interval_time)`,
        )
      ).getRowObjectsJS()[0]!;
      expect(fileSums.n).toBe(29_998);
      expect(fileSums).toEqual(joinSums);
    });
  }, 300_000);
});
