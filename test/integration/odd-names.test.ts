// Warehouse names are data, not paths or SQL: feature tables and columns with the odd names each
// warehouse can hold (DuckDB: quotes, backticks, spaces, '/', a backslash, non-ASCII letters;
// BigQuery: spaces, dashes, non-ASCII letters, flexible column names) are read, aligned and
// published with their names intact, on both backends (the embedded DuckDB warehouse, and
// BigQuery's stand-ins with a Cloud Storage stand-in as bucket), and nothing is written outside
// WORK_DIR and the bucket's staging prefix. A name that cannot be carried ('..', so a '.') is
// refused at discovery, naming the table and the fix, before anything is extracted or staged.
import { existsSync, readdirSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_FEATURES_DATASET as F } from "../../src/constants.ts";
import { gcpStandInEnv, startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { runJob, type JobRun } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../../standins/tiny-warehouse.ts";

const PAIR = "eurusd";
const OUTPUT = "bqx-names-output";
const START_EPOCH_SECONDS = Date.parse("2020-01-02T00:00:00Z") / 1000;

/** [table, column, the column's name in the training file]; values are k x 1000 + the row. */
type Odd = ReadonlyArray<readonly [string, string, string]>;
const ODD: Readonly<Record<"local" | "gcp", Odd>> = {
  // DuckDB takes any name.
  local: [
    [`agg_${PAIR} it's`, "a it's", "agg_ it's_a it's"],
    [`agg_${PAIR} "q"`, 'b "q"', 'agg_ "q"_b "q"'],
    [`agg_${PAIR} \`b\``, "c `b`", "agg_ `b`_c `b`"],
    [`agg_${PAIR}/up`, "d/\\x", "agg_/up_d/\\x"],
    [`agg_${PAIR}_é€`, "e_ü", "agg_é€_e_ü"],
  ],
  // BigQuery's own rules: table names of letters, marks, numbers, connectors, dashes and spaces;
  // flexible column names add ' & % = + : < > # | (no quote, backtick, slash or backslash, which
  // the Storage Read API refuses in a table's path, as the stand-in does).
  gcp: [
    [`agg_${PAIR} space-dash`, "a it's", "agg_ space-dash_a it's"],
    [`agg_${PAIR} ünï`, "b <x> #1 | y=z+w:v", "agg_ ünï_b <x> #1 | y=z+w:v"],
    [`agg_${PAIR}_éß`, "e_ü & 100%", "agg_éß_e_ü & 100%"],
  ],
};
/** A table whose name cannot be carried: '..' (a '.') is a path in BigQuery and parquet readers. */
const REFUSED = `agg_${PAIR}/../../escaped`;

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
let dir: string;
let trainingRows: number;
let gcs: GcsStandIn;

async function addTables(file: string, tables: ReadonlyArray<readonly [string, string]>): Promise<void> {
  const instance = await DuckDBInstance.create(file);
  const c = await instance.connect();
  try {
    for (const [k, [table, column]] of tables.entries()) {
      await c.run(
        `CREATE TABLE ${q(F)}.${q(table)} AS SELECT to_timestamp(${START_EPOCH_SECONDS} + i * 60) AS interval_time, (${(k + 1) * 1000} + i)::DOUBLE AS ${q(column)} FROM range(60) r(i)`,
      );
    }
    await c.run("CHECKPOINT");
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

/** Every file under `root`, relative, sorted. */
function filesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "odd-names-test-"));
  for (const backend of ["local", "gcp"] as const) {
    const ok = path.join(dir, `ok-${backend}.duckdb`);
    const refused = path.join(dir, `refused-${backend}.duckdb`);
    trainingRows = (await buildTinyWarehouse({ path: ok, pairs: [PAIR] }))[PAIR]!.trainingRows;
    await addTables(
      ok,
      ODD[backend].map(([t, c]) => [t, c] as const),
    );
    await buildTinyWarehouse({ path: refused, pairs: [PAIR] });
    await addTables(refused, [...ODD[backend].map(([t, c]) => [t, c] as const), [REFUSED, "x"]]);
  }
  gcs = await startGcsStandIn({ buckets: [OUTPUT] });
}, 60_000);

afterAll(async () => {
  await gcs?.close();
  await rm(dir, { recursive: true, force: true });
});

describe.each(["local", "gcp"] as const)("BACKEND=%s", (backend) => {
  const odd = ODD[backend];
  const standIns: StandIns[] = [];
  afterAll(async () => {
    for (const s of standIns) await s.close();
  });

  async function run(warehouse: "ok" | "refused", name: string, extra: Record<string, string> = {}): Promise<JobRun> {
    const file = path.join(dir, `${warehouse}-${backend}.duckdb`);
    const root = path.join(dir, `${backend}-${name}`);
    let source: Record<string, string> = { WAREHOUSE: file, OUTPUT_URI: path.join(root, "bucket") };
    if (backend === "gcp") {
      const bq = await startBigQueryStandIns({ warehouse: file });
      standIns.push(bq);
      source = { ...gcpStandInEnv(bq, gcs.endpoint), OUTPUT_URI: `gs://${OUTPUT}/${backend}-${name}` };
    }
    return runJob({ TARGET_PAIR: PAIR, WORK_DIR: path.join(root, "work"), MAX_WORKERS: "2", ...TINY_VALIDATION_ENV, ...source, ...extra });
  }

  async function trainingFile(name: string): Promise<string> {
    if (backend === "local") return path.join(dir, `${backend}-${name}`, "bucket", `training_${PAIR}.parquet`);
    const file = path.join(dir, `${backend}-${name}.parquet`);
    await import("node:fs/promises").then((fs) => gcs.readObject(OUTPUT, `${backend}-${name}/training_${PAIR}.parquet`).then((b) => fs.writeFile(file, b)));
    return file;
  }

  it("builds the file with the odd names the warehouse can hold (DuckDB: quotes, backticks, spaces, '/', '\\', non-ASCII; BigQuery: spaces, dashes, non-ASCII, flexible column names), writing nowhere else", async () => {
    // Stopped at validation first, so the staged parts (and their metadata) can be looked at.
    const stopped = await run("ok", "odd", { MIN_ROWS: "100000" });
    expect(stopped.code, stopped.stdout.slice(-2000)).toBe(1);
    const staged =
      backend === "local"
        ? filesUnder(path.join(dir, `${backend}-odd`, "bucket")).filter((f) => !f.startsWith(".bqx-meta"))
        : gcs.listObjects(OUTPUT, `${backend}-odd/`).map((n) => n.slice(`${backend}-odd/`.length));
    expect(staged.length).toBeGreaterThan(0);
    for (const f of staged) expect(f).toMatch(/^_staging\/eurusd\/parts\/[0-9a-f]{64}\.(chunks|footer)$/);
    if (backend === "gcp") {
      const labels = staged.map((f) => gcs.getObject(OUTPUT, `${backend}-odd/${f}`)!.metadata.table);
      for (const [table] of odd) expect(labels).toContain(encodeURIComponent(`${F}.${table}`));
    }

    const done = await run("ok", "odd");
    expect(done.code, done.stdout.slice(-2000)).toBe(0);
    const frame = pl.readParquet(await trainingFile("odd"));
    expect(frame.height).toBe(trainingRows);
    for (const [k, [, , column]] of odd.entries()) {
      expect(frame.columns, column).toContain(column);
      expect(frame.getColumn(column).get(0)).toBe((k + 1) * 1000);
      expect(frame.getColumn(column).get(trainingRows - 1)).toBe((k + 1) * 1000 + trainingRows - 1);
    }
    // Only the file, its manifest, its run report and the index in the bucket; WORK_DIR emptied; nothing else beside them.
    const root = path.join(dir, `${backend}-odd`);
    const published = ["reports/index.html", `training_${PAIR}.manifest.json`, `training_${PAIR}.parquet`, `training_${PAIR}.report.html`];
    if (backend === "local") {
      expect(filesUnder(path.join(root, "bucket")).filter((f) => !f.startsWith(".bqx-meta"))).toEqual(published);
    } else {
      expect(gcs.listObjects(OUTPUT, `${backend}-odd/`)).toEqual(published.map((p) => `${backend}-odd/${p}`));
    }
    // The run report: this run read only the target (its keys fingerprint the parts); every feature table's part was reused.
    const report =
      backend === "local"
        ? await readFile(path.join(root, "bucket", `training_${PAIR}.report.html`), "utf8")
        : (await gcs.readObject(OUTPUT, `${backend}-odd/training_${PAIR}.report.html`)).toString("utf8");
    expect(report).toMatch(new RegExp(`1 table read and staged this run, [^<]*; ${4 + odd.length} tables reused from an earlier attempt`));
    expect(filesUnder(path.join(root, "work"))).toEqual([]);
    expect(readdirSync(dir).filter((f) => f.includes("escaped") || f === "up")).toEqual([]);
    const manifestText =
      backend === "local"
        ? await readFile(path.join(root, "bucket", `training_${PAIR}.manifest.json`), "utf8")
        : (await gcs.readObject(OUTPUT, `${backend}-odd/training_${PAIR}.manifest.json`)).toString("utf8");
    const manifest = JSON.parse(manifestText) as { tables: { features: Array<{ table: string }> } };
    for (const [table] of odd) expect(manifest.tables.features.map((t) => t.table)).toContain(`${F}.${table}`);
    // BigQuery job ids are made of the table's name, reduced to what job ids may hold.
    const jobIds = standIns.flatMap((s) => s.requests.filter((r) => r.method === "jobs.insert").map((r) => r.jobId!));
    if (backend === "gcp") expect(jobIds.length).toBeGreaterThan(0);
    for (const id of jobIds) expect(id).toMatch(/^[A-Za-z0-9_-]{1,1024}$/);
    // Log lines stay one JSON object per line, the names escaped inside.
    expect(done.stdout.split("\n").filter((l) => l.trim() !== "" && !l.startsWith("{"))).toEqual([]);
  }, 180_000);

  it("refuses a table whose name holds '..' at discovery, naming it and the fix, before anything is extracted or staged", async () => {
    const refused = await run("refused", "refused");
    expect(refused.code).toBe(1);
    const error = refused.lines.find((l) => l.severity === "ERROR" && /discovery found/.test(String(l.message)));
    expect(error, refused.stdout.slice(-2000)).toBeDefined();
    expect(String(error!.message)).toContain(`table "${F}.${REFUSED}": its name contains '.'`);
    expect(String(error!.message)).toContain("rename it in the warehouse");
    expect(String(error!.message)).not.toContain("it's");
    const root = path.join(dir, `${backend}-refused`);
    expect(filesUnder(path.join(root, "work"))).toEqual([]);
    if (backend === "local") expect(filesUnder(path.join(root, "bucket")).filter((f) => !f.startsWith(".bqx-meta"))).toEqual([]);
    else expect(gcs.listObjects(OUTPUT, `${backend}-refused/`)).toEqual([]);
    expect(refused.lines.some((l) => /^extract(ed|ion pool)/.test(String(l.message)))).toBe(false);
  }, 120_000);
});
