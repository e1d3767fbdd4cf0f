// Schema drift between two builds: the file is built once, the warehouse changed (a column added,
// a table dropped, a column retyped), and the job run again on a copy of the bucket under each
// SCHEMA_CHANGE policy: allow and warn publish (at info, with one warning), fail keeps the previous
// file, its metadata and manifest byte for byte and exits 1 naming every difference.
import { createHash } from "node:crypto";
import { execFile } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { onWarehouse } from "../support/job-process.ts";
import { runJob, type JobRun } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../../standins/tiny-warehouse.ts";

const execFileAsync = promisify(execFile);
const PAIR = "eurusd";
const F = "bqx_ml_v3_features_v2";
const MANIFEST = `training_${PAIR}.manifest.json`;
const FILE = `training_${PAIR}.parquet`;
let dir: string;
let clean: string;
/** The bucket of the first build, copied (with its mtimes, so its generations) for each case. */
let firstBucket: string;
let first: JobRun;

const CHANGES = {
  added: [`ALTER TABLE ${F}.var_agg_bqx_eur ADD COLUMN extra DOUBLE DEFAULT 1.5`],
  dropped: [`DROP TABLE ${F}.mom_bqx_eurusd`],
  retyped: [`ALTER TABLE ${F}.tri_agg_bqx_eur_usd_gbp ALTER spread TYPE BIGINT USING round(spread)::BIGINT`],
};

async function warehouseWith(name: string, sql: readonly string[]): Promise<string> {
  const warehouse = path.join(dir, `${name}.duckdb`);
  await copyFile(clean, warehouse);
  await onWarehouse(warehouse, ...sql);
  return warehouse;
}

const envFor = (name: string, warehouse: string, extra: Record<string, string> = {}) => ({
  TARGET_PAIR: PAIR,
  WAREHOUSE: warehouse,
  OUTPUT_URI: path.join(dir, name, "bucket"),
  WORK_DIR: path.join(dir, name, "work"),
  MAX_WORKERS: "2",
  ...TINY_VALIDATION_ENV,
  ...extra,
});

/** Runs the job on `sql` applied to the clean warehouse, over a copy of the first build's bucket. */
async function rebuild(name: string, sql: readonly string[], extra: Record<string, string> = {}, prepare?: (bucket: string) => Promise<void>) {
  const warehouse = await warehouseWith(name, sql);
  const bucket = path.join(dir, name, "bucket");
  await mkdir(path.dirname(bucket), { recursive: true });
  // cp -a keeps mtimes to the nanosecond, so the local bucket's generations (fs.cp rounds to ms).
  await execFileAsync("cp", ["-a", firstBucket, bucket]);
  await prepare?.(bucket);
  const before = await snapshot(bucket);
  const run = await runJob(envFor(name, warehouse, extra));
  const manifest = JSON.parse(await readFile(path.join(bucket, MANIFEST), "utf8"));
  return { run, bucket, before, manifest, line: (pattern: RegExp) => run.lines.find((l) => pattern.test(String(l.message))) };
}

/** SHA-256 and mtime (the local bucket's generation) of every published object and sidecar (the staging prefix aside). */
async function snapshot(bucket: string): Promise<Record<string, string>> {
  const files = (await readdir(bucket, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
  const out: Record<string, string> = {};
  for (const e of files) {
    const rel = path.relative(bucket, path.join(e.parentPath, e.name));
    if (rel.startsWith("_staging") || rel.startsWith(path.join(".bqx-meta", "_staging"))) continue;
    const mtimeNs = (await stat(path.join(bucket, rel), { bigint: true })).mtimeNs;
    out[rel] = `${createHash("sha256")
      .update(await readFile(path.join(bucket, rel)))
      .digest("hex")} ${mtimeNs}`;
  }
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "schema-change-test-"));
  clean = path.join(dir, "clean.duckdb");
  await buildTinyWarehouse({ path: clean, pairs: [PAIR] });
  first = await runJob(envFor("first", clean));
  if (first.code !== 0) throw new Error(`the first build exited ${first.code}: ${first.stdout.slice(-2000)}`);
  firstBucket = path.join(dir, "first", "bucket");
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("SCHEMA_CHANGE", () => {
  it("records each table's columns and types in the manifest, and a first build as nothing to compare", async () => {
    const manifest = JSON.parse(await readFile(path.join(firstBucket, MANIFEST), "utf8"));
    expect(manifest.file.schema[`${F}.tri_agg_bqx_eur_usd_gbp`]).toEqual({ tri_agg_bqx_eur_usd_gbp_spread: "DOUBLE", tri_agg_bqx_eur_usd_gbp_phase: "INT64" });
    expect(manifest.file.schema[`bqx_ml_v3_analytics_v2.targets_${PAIR}`].interval_time).toMatch(/^INT64 TIMESTAMP\(MICROS,UTC\)$/);
    expect(Object.values(manifest.file.schema).reduce((n: number, cols) => n + Object.keys(cols as object).length, 0)).toBe(manifest.columns);
    expect(manifest.run.schemaChange).toMatchObject({
      policy: "warn",
      previous: null,
      notCompared: "no previous file in the bucket (first build)",
      added: [],
      rowsChange: null,
    });
    expect(manifest.run.config.SCHEMA_CHANGE).toBe("warn");
    expect(first.lines.find((l) => /schema not compared: .*first build/.test(String(l.message)))?.severity).toBe("INFO");
  });

  it("publishes an unchanged schema at info, whatever the policy", async () => {
    const { run, line, manifest } = await rebuild("same", [], { SCHEMA_CHANGE: "fail" });
    expect(run.code).toBe(0);
    expect(line(/schema unchanged since the published/)?.severity).toBe("INFO");
    expect(manifest.run.schemaChange).toMatchObject({ policy: "fail", added: [], removed: [], retyped: [], tablesAdded: [], tablesRemoved: [], rowsChange: 0 });
  }, 60_000);

  it("allow: publishes a file with an added column, saying so at info", async () => {
    const { run, line, manifest, bucket, before } = await rebuild("allow", CHANGES.added, { SCHEMA_CHANGE: "allow" });
    expect(run.code).toBe(0);
    expect(line(/schema changed/)).toMatchObject({ severity: "INFO", added: 1 });
    expect(String(line(/schema changed/)?.message)).toContain("1 columns added (var_agg_bqx_eur_extra)");
    expect(run.lines.filter((l) => l.severity === "WARNING" && /schema/.test(String(l.message)))).toEqual([]);
    expect(manifest.run.schemaChange).toMatchObject({ policy: "allow", added: ["var_agg_bqx_eur_extra"], removed: [], retyped: [], rowsChange: 0 });
    const previous = JSON.parse(await readFile(path.join(firstBucket, MANIFEST), "utf8"));
    expect(manifest.run.schemaChange.previous).toMatchObject({
      rows: previous.rows,
      columns: previous.columns,
      generation: previous.file.generation,
      createdAt: previous.run.createdAt,
    });
    expect(manifest.file.schema[`${F}.var_agg_bqx_eur`].var_agg_bqx_eur_extra).toBe("DOUBLE");
    // The run report shows the change too.
    const report = await readFile(path.join(bucket, `training_${PAIR}.report.html`), "utf8");
    expect(report).toContain("<h3>columns added (1)</h3><ul><li><code>var_agg_bqx_eur_extra</code></li></ul>");
    expect((await snapshot(bucket))[FILE]).not.toBe(before[FILE]);
  }, 60_000);

  it("warn (the default): publishes a file without a dropped table, with one warning naming it and its columns", async () => {
    const { run, line, manifest } = await rebuild("warn", CHANGES.dropped);
    expect(run.code).toBe(0);
    const warning = line(/schema changed/);
    expect(warning?.severity).toBe("WARNING");
    expect(String(warning?.message)).toMatch(
      /1 tables removed \(bqx_ml_v3_features_v2\.mom_bqx_eurusd\); 1 columns removed \(mom_bqx_z\); rows \+0; publishing \(SCHEMA_CHANGE=warn\)/,
    );
    expect(manifest.run.schemaChange).toMatchObject({ policy: "warn", tablesRemoved: [`${F}.mom_bqx_eurusd`], removed: ["mom_bqx_z"], added: [] });
    expect(manifest.file.schema[`${F}.mom_bqx_eurusd`]).toBeUndefined();
  }, 60_000);

  it("fail: keeps the previous file, metadata and manifest byte for byte, exits 1 naming every difference, keeps the staged parts", async () => {
    const { run, bucket, before } = await rebuild("fail", [...CHANGES.added, ...CHANGES.dropped, ...CHANGES.retyped], { SCHEMA_CHANGE: "fail" });
    expect(run.code).toBe(1);
    const failure = run.lines.find((l) => l.severity === "ERROR" && l.reason === "schema-change");
    expect(failure?.stage).toBe("upload");
    const message = String(failure?.message);
    expect(message).toContain("1 tables removed (bqx_ml_v3_features_v2.mom_bqx_eurusd)");
    expect(message).toContain("1 columns added (var_agg_bqx_eur_extra)");
    expect(message).toContain("1 columns removed (mom_bqx_z)");
    expect(message).toContain("1 columns retyped (tri_agg_bqx_eur_usd_gbp_spread DOUBLE -> INT64)");
    expect(message).toMatch(/SCHEMA_CHANGE=fail, so it is kept with its manifest and nothing was published\. Fix: .*SCHEMA_CHANGE=warn or SCHEMA_CHANGE=allow/);
    expect(await snapshot(bucket)).toEqual(before);
    expect(before[FILE]).toBeDefined();
    expect(before[MANIFEST]).toBeDefined();
    // Like any failure before publishing: the parts stay for the next run, which reuses them.
    expect((await readdir(path.join(bucket, "_staging", PAIR, "parts"))).length).toBeGreaterThan(0);
    const again = await runJob(envFor("fail", path.join(dir, "fail.duckdb"), { SCHEMA_CHANGE: "warn" }));
    expect(again.code).toBe(0);
    expect(again.lines.some((l) => /reusing \d+ parts staged by an earlier attempt/.test(String(l.message)))).toBe(true);
    expect(again.lines.find((l) => /schema changed/.test(String(l.message)))?.severity).toBe("WARNING");
  }, 90_000);

  it("a manifest left from before the file in the bucket (its run died before writing it) is compared with, and the log says so", async () => {
    const olderManifest = async (bucket: string) => {
      const file = path.join(bucket, MANIFEST);
      const old = JSON.parse(await readFile(file, "utf8"));
      await writeFile(file, JSON.stringify({ ...old, file: { ...old.file, generation: "1" } }));
    };
    const { run, line, manifest } = await rebuild("stale-manifest", CHANGES.added, {}, olderManifest);
    expect(run.code).toBe(0);
    const fileGeneration = JSON.parse(await readFile(path.join(firstBucket, MANIFEST), "utf8")).file.generation;
    expect(line(/schema changed/)).toMatchObject({ severity: "WARNING", previousGeneration: fileGeneration });
    expect(String(line(/schema changed/)?.message)).toContain(`the manifest describes generation 1, the file in the bucket is generation ${fileGeneration}`);
    expect(manifest.run.schemaChange).toMatchObject({ added: ["var_agg_bqx_eur_extra"], staleManifest: expect.stringContaining("generation 1") });
  }, 60_000);

  it("a previous manifest without a schema: columns are not compared (logged), tables and rows still are", async () => {
    const stripSchema = async (bucket: string) => {
      const file = path.join(bucket, MANIFEST);
      const old = JSON.parse(await readFile(file, "utf8"));
      delete old.file.schema;
      await writeFile(file, JSON.stringify(old));
    };
    const columnOnly = await rebuild("old-manifest", CHANGES.added, { SCHEMA_CHANGE: "fail" }, stripSchema);
    expect(
      columnOnly.run.code,
      columnOnly.run.lines
        .filter((l) => l.severity === "ERROR")
        .map((l) => l.message)
        .join("\n"),
    ).toBe(0);
    expect(String(columnOnly.line(/schema compared in part with the published/)?.message)).toContain(
      "the previous manifest has no schema (written by an earlier version): columns not compared",
    );
    expect(columnOnly.manifest.run.schemaChange).toMatchObject({ added: [], tablesRemoved: [], rowsChange: 0 });

    const tableGone = await rebuild("old-manifest-dropped", CHANGES.dropped, { SCHEMA_CHANGE: "fail" }, stripSchema);
    expect(tableGone.run.code).toBe(1);
    expect(String(tableGone.run.lines.find((l) => l.reason === "schema-change")?.message)).toContain("1 tables removed (bqx_ml_v3_features_v2.mom_bqx_eurusd)");
    expect(await snapshot(tableGone.bucket)).toEqual(tableGone.before);
  }, 90_000);
});
