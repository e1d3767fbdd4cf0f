// The whole job with BACKEND=gcp, as a child process, against the BigQuery (REST + Storage Read)
// and Cloud Storage stand-ins running in this process over a small sample warehouse. Its training
// file, composed in the bucket, must be identical to what the embedded backend builds from the same
// warehouse, clean or under transient faults, with the CRC32C predicted from its parts; its tables
// are read through Storage Read sessions on the tables themselves (no query job; several unordered
// streams for the larger ones), through query jobs only with ROW_LIMIT; the parts
// staged in the output's bucket must let a fresh container resume, also after a SIGKILL during the
// compose or between compose and publish.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pl from "nodejs-polars";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildSampleWarehouse } from "../../standins/sample/build.ts";
import { sampleTables } from "../../standins/sample/spec.ts";
import { schemaSha256 } from "../../src/parquet/index.ts";
import { gcpStandInEnv, startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { startJob, waitFor } from "../support/job-process.ts";
import { runJob, type JobRun } from "../support/run-job.ts";

const PAIR = "eurusd";
const ROWS = 300;
/** Feature tables copied from the 667 of the sample: every family, a quick run. */
const FEATURES = 40;
const F = "bqx_ml_v3_features_v2";
const OUTPUT = "bqx-test-output";
const TRAINING = `training_${PAIR}.parquet`;

let dir: string;
let warehouse: string;
let bq: StandIns;
let gcs: GcsStandIn;
/** The embedded backend's training file for the same warehouse. */
let reference: string;
/** The feature tables in the sample warehouse, sorted. */
let featureNames: string[];

const sha256 = async (file: string) =>
  createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
const messages = (run: JobRun) => run.lines.map((l) => String(l.message));

function gcpEnv(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TARGET_PAIR: PAIR,
    ...gcpStandInEnv(bq, gcs.endpoint),
    OUTPUT_URI: `gs://${OUTPUT}/${name}`,
    WORK_DIR: path.join(dir, name, "work"),
    MIN_ROWS: "100",
    MIN_COLUMNS: "100",
    MAX_WORKERS: "2",
    ...extra,
  };
}

/** The stored training object of a run: its description, and its bytes downloaded to a local file. */
async function trainingObject(name: string) {
  const obj = gcs.getObject(OUTPUT, `${name}/${TRAINING}`);
  expect(obj, `gs://${OUTPUT}/${name}/${TRAINING}`).toBeDefined();
  const file = path.join(dir, `${name}-${TRAINING}`);
  await writeFile(file, await gcs.readObject(OUTPUT, `${name}/${TRAINING}`));
  return { ...obj!, file };
}

/** Every column's values, compared with polars; then the bytes, which the merge makes deterministic. */
async function expectSameContentAsLocal(file: string): Promise<void> {
  const expected = pl.readParquet(reference);
  const actual = pl.readParquet(file);
  expect(actual.columns).toEqual(expected.columns);
  expect(actual.dtypes.map(String)).toEqual(expected.dtypes.map(String));
  expect(actual.height).toBe(expected.height);
  const differing = expected.columns.filter((c) => !expected.getColumn(c).seriesEqual(actual.getColumn(c), true));
  expect(differing).toEqual([]);
  expect(await sha256(file)).toBe(await sha256(reference));
}

/** Fingerprints of the parts staged whole (both objects) under a run's output prefix. */
function stagedParts(name: string): string[] {
  const names = gcs.listObjects(OUTPUT, `${name}/_staging/${PAIR}/parts/`);
  return names
    .filter((n) => n.endsWith(".chunks") && names.includes(n.replace(/\.chunks$/, ".footer")))
    .map((n) => n.slice(n.lastIndexOf("/") + 1, -".chunks".length));
}

/** Query jobs a run inserted to read tables (discovery's INFORMATION_SCHEMA queries are jobs too, and not counted). */
function extractionJobs(from: number) {
  return bq.requests.slice(from).filter((r) => r.method === "jobs.insert" && !/INFORMATION_SCHEMA/.test(r.query ?? ""));
}

/** Read sessions a run created on the warehouse's own tables (not on query results). */
function tableSessions(from: number) {
  return bq.requests.slice(from).filter((r) => r.method === "CreateReadSession" && !/\/datasets\/_job_results\//.test(r.table ?? ""));
}

/** Parts the run extracted itself (LOG_LEVEL=debug logs one line per part). */
function extractedParts(run: JobRun): string[] {
  return run.lines.filter((l) => /^extracted \S+ row groups \d+-\d+ as part /.test(String(l.message))).map((l) => String(l.part));
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "pipeline-gcp-test-"));
  warehouse = path.join(dir, "warehouse.duckdb");
  // The target, the two tables discovery skips, and an evenly spread FEATURES of the 667 features.
  const features = sampleTables(PAIR)
    .filter((t) => t.dataset === "features" && t.hasIntervalTime && (t.forPair === PAIR || t.forPair === null))
    .map((t) => t.name)
    .sort();
  const kept = new Set(Array.from({ length: FEATURES }, (_, i) => features[Math.floor((i * features.length) / FEATURES)]!));
  featureNames = [...kept].sort();
  await buildSampleWarehouse({
    path: warehouse,
    pair: PAIR,
    rows: ROWS,
    only: (t) => (t.dataset === "targets" ? t.name === `targets_${PAIR}` : kept.has(t.name) || !t.hasIntervalTime),
  });
  // Small Arrow batches, so a ReadRows stream carries several and can be dropped midway; a read
  // stream per 150 rows, so a table's ~300 rows come in two unordered streams.
  bq = await startBigQueryStandIns({ warehouse, batchRows: 100, streamRows: 150, seed: 11 });
  gcs = await startGcsStandIn({ buckets: [OUTPUT] });
  const local = await runJob({
    TARGET_PAIR: PAIR,
    WAREHOUSE: warehouse,
    OUTPUT_URI: path.join(dir, "local", "bucket"),
    WORK_DIR: path.join(dir, "local", "work"),
    MIN_ROWS: "100",
    MIN_COLUMNS: "100",
    MAX_WORKERS: "2",
  });
  expect(local.code, local.stdout.slice(-2000)).toBe(0);
  reference = path.join(dir, "local", "bucket", TRAINING);
}, 120_000);

afterEach(() => {
  Object.assign(bq.faults, { restErrors: [], restErrorRate: 0, jobFailures: [], grpcErrors: [], readRowsDrops: [], readSessionDenied: false });
  bq.faults.accessDeniedDatasets.clear();
  bq.faults.hangingTables.clear();
  gcs.faults.reset();
});

afterAll(async () => {
  await bq?.close();
  await gcs?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the six-stage pipeline with BACKEND=gcp", () => {
  it("exits 0 with a composite training object identical to the local backend's file, its CRC32C as predicted, described by its metadata", async () => {
    const run = await runJob(gcpEnv("clean"));
    // Nothing on stderr: Node's process warnings go through the logger (src/log.ts), including the
    // one @google-cloud/storage 8 makes Node emit when the index reads a manifest (README).
    expect(run.stderr).toBe("");
    expect(run.code, run.stdout.slice(-3000)).toBe(0);

    expect(messages(run)[0]).toMatch(
      new RegExp(
        `^building training_eurusd\\.parquet with BACKEND=gcp: BigQuery project ${bq.project} in US at http://127\\.0\\.0\\.1:\\d+; output gs://${OUTPUT}/clean \\(parts staged under its _staging/ prefix`,
      ),
    );
    expect(messages(run)).toContainEqual(expect.stringMatching(/^extraction pool: 2 workers \(from MAX_WORKERS\) x 16 tables each, within MEMORY_BUDGET /));
    expect(messages(run)).toContainEqual(expect.stringMatching(new RegExp(`^extracted ${FEATURES}/${FEATURES} `)));

    const obj = await trainingObject("clean");
    await expectSameContentAsLocal(obj.file);
    // Composed in the bucket: head, 41 parts and the footer, 43 sources in a tree of 32-source calls.
    expect(obj.componentCount).toBe(FEATURES + 1 + 2);
    expect(obj.md5Hash ?? "").toBe("");
    const upload = run.lines.find((l) => l.stage === "upload" && l.composeCalls !== undefined)!;
    expect(upload.composeCalls).toBe(3);
    const manifest = JSON.parse((await gcs.readObject(OUTPUT, `clean/training_${PAIR}.manifest.json`)).toString("utf8"));
    expect(manifest.file).toMatchObject({ crc32c: obj.crc32c, bytes: obj.size, generation: obj.generation, componentCount: FEATURES + 3 });
    expect(run.lines.find((l) => /^composed .* match the prediction from the parts$/.test(String(l.message)))?.crc32c).toBe(obj.crc32c);
    expect(obj.metadata).toEqual({ pair: PAIR, rows: String(manifest.rows), columns: String(manifest.columns), schema_sha256: await schemaSha256(reference) });
    expect(manifest.run.config).toMatchObject({ BACKEND: "gcp", GCP_PROJECT: bq.project, OUTPUT_URI: `gs://${OUTPUT}/clean` });
    // Nothing staged is left: the parts, the head and footer, the intermediate composites.
    expect(gcs.listObjects(OUTPUT, "clean/_staging/")).toEqual([]);
    // The run report and the index, beside the file, served as pages.
    for (const page of [`clean/training_${PAIR}.report.html`, "clean/reports/index.html"])
      expect(gcs.getObject(OUTPUT, page)?.contentType, page).toBe("text/html; charset=utf-8");
  }, 90_000);

  it("exits 0 with identical content through 20% transient BigQuery and Cloud Storage faults and a dropped ReadRows stream", async () => {
    bq.faults.restErrorRate = 0.2;
    bq.faults.readRowsDrops.push({ afterBatches: 1, mode: "unavailable", count: 1 });
    // Not on deletes and simple (probe) uploads: the library never retries those and the adapter
    // tries them 3 times, so at 20% one call in 125 fails for real, and the cleanup's deletes
    // would make this test fail now and then.
    gcs.faults.configure({
      failRate: 0.2,
      failStatus: 503,
      seed: 5,
      failKinds: ["bucket", "list", "metadata", "media", "upload-start", "upload-chunk", "upload-status", "compose"],
    });
    // And certainly some on the way the parts and the file go up, whatever the draws.
    gcs.faults.failNext(1, 503, ["upload-start"]);
    gcs.faults.failNext(1, 429, ["upload-chunk"]);
    gcs.faults.failNext(1, 503, ["compose"]);
    const bqBefore = bq.requests.length;
    const gcsBefore = gcs.requests.length;
    const run = await runJob(gcpEnv("faults"));
    expect(run.code, run.stdout.slice(-3000)).toBe(0);

    const rest = bq.requests.slice(bqBefore).filter((r) => r.api === "bigquery");
    expect(rest.filter((r) => r.status === 429 || r.status === 503).length).toBeGreaterThan(rest.length * 0.1);
    const resumed = bq.requests.slice(bqBefore).filter((r) => r.method === "ReadRows" && (r.offset ?? 0) > 0);
    expect(resumed.length).toBe(1);
    const injected = gcs.requests.slice(gcsBefore).filter((r) => r.injected);
    expect(injected.length).toBeGreaterThanOrEqual(3);
    expect(injected.some((r) => r.kind === "compose")).toBe(true);
    await expectSameContentAsLocal((await trainingObject("faults")).file);
  }, 180_000);

  it("stages parts in the output's bucket so a run in a fresh container reuses them, extracts a damaged one again alone, then removes them all", async () => {
    const env = (work: string, extra: Record<string, string> = {}) => gcpEnv("resume", { WORK_DIR: path.join(dir, work), LOG_LEVEL: "debug", ...extra });
    // A run that fails after extraction (validation refuses the file): nothing is published, the parts stay staged.
    const failed = await runJob(env("work-a", { MIN_ROWS: "1000000" }));
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/rows: \d+ < MIN_ROWS 1000000/);
    expect(gcs.getObject(OUTPUT, `resume/${TRAINING}`)).toBeUndefined();
    const staged = stagedParts("resume");
    expect(staged).toHaveLength(FEATURES + 1);
    const chunks = gcs.getObject(OUTPUT, `resume/_staging/${PAIR}/parts/${staged[5]}.chunks`)!;
    expect(chunks.metadata).toMatchObject({ fingerprint: staged[5], bqx_crc32c: chunks.crc32c });

    // Another writer replaces one part's chunks with other bytes: a new generation, the old metadata.
    const damaged = staged[9]!;
    const name = `resume/_staging/${PAIR}/parts/${damaged}.chunks`;
    const original = gcs.getObject(OUTPUT, name)!;
    const bytes = await gcs.readObject(OUTPUT, name);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0xff;
    await gcs.putObject(OUTPUT, name, bytes, original.metadata);

    const queriesBefore = bq.requests.length;
    const resumed = await runJob(env("work-b"));
    expect(resumed.code, resumed.stdout.slice(-3000)).toBe(0);
    expect(messages(resumed)).toContainEqual(
      expect.stringMatching(new RegExp(`^reusing ${FEATURES} parts staged by an earlier attempt in gs://${OUTPUT}/resume/_staging/eurusd/parts/$`)),
    );
    expect(resumed.lines.filter((l) => /in the bucket is damaged/.test(String(l.message))).map((l) => l.part)).toEqual([damaged]);
    expect(extractedParts(resumed)).toEqual([damaged]);
    // Reads: the target (always read again: its keys fingerprint every part) and the damaged part's table; no query job.
    expect(extractionJobs(queriesBefore)).toEqual([]);
    const sessions = tableSessions(queriesBefore);
    expect(sessions).toHaveLength(2);
    expect(sessions[0]!.table).toMatch(new RegExp(`/tables/targets_${PAIR}$`));

    await expectSameContentAsLocal((await trainingObject("resume")).file);
    expect(gcs.listObjects(OUTPUT, "resume/_staging/")).toEqual([]);
  }, 120_000);

  it.each([
    ["during the compose", "compose"],
    ["between the compose and the publish", "publish"],
  ])(
    "a run killed with SIGKILL %s resumes from its staged parts to the same file, and leaves nothing staged",
    async (_label, when) => {
      const name = `kill-${when}`;
      // Compose calls take 1.5 s here, so the kill lands inside one, or between the file's compose and its move.
      gcs.faults.configure({ latencyMs: 1_500, latencyKinds: ["compose"] });
      const e = gcpEnv(name, { LOG_LEVEL: "debug" });
      const job = startJob(e);
      const assembly = `${name}/_staging/${PAIR}/assembly/`;
      const reached =
        when === "compose"
          ? () => gcs.listObjects(OUTPUT, assembly).some((n) => n.endsWith("/footer"))
          : () => gcs.listObjects(OUTPUT, assembly).some((n) => n.endsWith("/training.parquet"));
      expect(await waitFor(job, reached, 5)).toBe(true);
      if (when === "compose") await new Promise((r) => setTimeout(r, 300));
      job.child.kill("SIGKILL");
      const killed = await job.done;
      expect(killed.signal).toBe("SIGKILL");
      expect(gcs.getObject(OUTPUT, `${name}/${TRAINING}`)).toBeUndefined();
      const left = gcs.listObjects(OUTPUT, assembly);
      expect(left.some((n) => n.endsWith("/training.parquet"))).toBe(when === "publish");
      gcs.faults.reset();

      const again = await runJob(e);
      expect(again.code, again.stdout.slice(-2000)).toBe(0);
      expect(extractedParts(again)).toEqual([]);
      expect(again.lines.find((l) => l.stage === "extract" && l.reused !== undefined)).toMatchObject({ reused: FEATURES + 1 });
      await expectSameContentAsLocal((await trainingObject(name)).file);
      expect(gcs.listObjects(OUTPUT, `${name}/_staging/`)).toEqual([]);
    },
    120_000,
  );

  it("on SIGTERM with two tables whose reads never answer, abandons them after the grace and exits 130 within 8 s, the other parts staged", async () => {
    // The slow-table case of a shutdown: the tables in flight get 5 s to finish, then the pool is
    // torn down. Two reads hang (the stand-in never answers their read sessions) while the rest land.
    const hung = [featureNames[3]!, featureNames[17]!];
    for (const t of hung) bq.faults.hangingTables.add(`${F}.${t}`);
    const e = gcpEnv("term-hung", { QUERY_TIMEOUT: "10m" });
    const job = startJob(e);
    // Every part but the two hung ones (40 features + the target - 2) is staged.
    expect(await waitFor(job, () => stagedParts("term-hung").length >= FEATURES + 1 - hung.length, 20)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(job.exited()).toBe(false);
    const sent = performance.now();
    job.child.kill("SIGTERM");
    const run = await job.done;
    const elapsed = performance.now() - sent;
    console.log(`pipeline-gcp: SIGTERM with 2 hung reads in flight: exit ${run.code} after ${Math.round(elapsed)} ms`);
    expect(run.code, run.stdout.slice(-2000)).toBe(130);
    expect(elapsed).toBeLessThan(8_000);
    const said = messages(run);
    expect(said).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^extraction stopped: ${FEATURES + 1 - hung.length} parts are staged in gs://${OUTPUT}/term-hung/_staging/eurusd/parts/ for the next attempt; 2 not extracted`,
        ),
      ),
    );
    expect(said).toContain("stage extract failed: interrupted (Error: received SIGTERM)");
    expect(stagedParts("term-hung")).toHaveLength(FEATURES + 1 - hung.length);
    expect(gcs.getObject(OUTPUT, `term-hung/${TRAINING}`)).toBeUndefined();

    // The reads answer again: the next attempt extracts only the two and builds the same file.
    bq.faults.hangingTables.clear();
    const again = await runJob(e);
    expect(again.code, again.stdout.slice(-2000)).toBe(0);
    expect(messages(again)).toContainEqual(expect.stringMatching(/^reusing 39 parts staged by an earlier attempt/));
    await expectSameContentAsLocal((await trainingObject("term-hung")).file);
  }, 120_000);

  it("reads every table through a Storage Read session on the table itself, runs no extraction query job, and builds the local backend's file", async () => {
    const before = bq.requests.length;
    const run = await runJob(gcpEnv("table-reads"));
    expect(run.code, run.stdout.slice(-3000)).toBe(0);
    expect(extractionJobs(before)).toEqual([]);
    // Discovery still queries INFORMATION_SCHEMA: tables and columns per dataset, and the used
    // tables' versions (PARTITIONS) once per dataset.
    expect(bq.requests.slice(before).filter((r) => r.method === "jobs.insert")).toHaveLength(6);
    const sessions = tableSessions(before);
    expect(sessions.map((r) => r.status)).toEqual(Array(FEATURES + 1).fill("OK"));
    expect(new Set(sessions.map((r) => r.table!.slice(r.table!.lastIndexOf("/") + 1)))).toEqual(new Set([`targets_${PAIR}`, ...featureNames]));
    // The stand-in dealt the larger tables' rows to several streams, in no key order.
    expect(sessions.filter((r) => (r.streams ?? 0) > 1).length).toBeGreaterThan(0);
    const streamsRead = new Set(
      bq.requests
        .slice(before)
        .filter((r) => r.method === "ReadRows" && r.status === "OK")
        .map((r) => r.stream),
    );
    expect(streamsRead.size).toBe(sessions.reduce((n, r) => n + (r.streams ?? 0), 0));
    await expectSameContentAsLocal((await trainingObject("table-reads")).file);

    const said = run.lines.find((l) => /^BigQuery reads: /.test(String(l.message)));
    expect(String(said?.message)).toMatch(
      new RegExp(
        `^BigQuery reads: ${FEATURES + 1} read sessions on the tables themselves \\(\\d+ streams\\), 0 extraction query jobs; the sessions estimate \\d`,
      ),
    );
    const manifest = JSON.parse((await gcs.readObject(OUTPUT, `table-reads/training_${PAIR}.manifest.json`)).toString("utf8"));
    expect(manifest.run.bigqueryReads).toMatchObject({ tableReads: FEATURES + 1, queryJobs: 0, streams: streamsRead.size });
    expect(manifest.run.bigqueryReads.estimatedBytesScanned).toBeGreaterThan(0);
    expect(run.lines.find((l) => l.stage === "extract" && l.estimatedBytesScanned !== undefined)?.estimatedBytesScanned).toBe(
      manifest.run.bigqueryReads.estimatedBytesScanned,
    );
    // Before any read, the plan says what the reads will scan at most: the tables' logical bytes.
    const planned = run.lines.find((l) => /^the reads will scan at most /.test(String(l.message)));
    expect(planned, "the plan's bytes line").toBeDefined();
    expect(run.lines.indexOf(planned!)).toBeLessThan(run.lines.findIndex((l) => /^extraction pool: /.test(String(l.message))));
    expect(planned!.bytesToScanAtMost as number).toBeGreaterThanOrEqual(manifest.run.bigqueryReads.estimatedBytesScanned);
  }, 90_000);

  it.each([
    ["ROW_LIMIT", { ROW_LIMIT: "100000" }],
    ["BQ_READ_ROUTE=query", { BQ_READ_ROUTE: "query" }],
  ])(
    "with %s reads every table through a query job and its result, to the same rows",
    async (_label, extra) => {
      const name = `query-route-${Object.keys(extra)[0]!.toLowerCase()}`;
      const before = bq.requests.length;
      const run = await runJob(gcpEnv(name, extra));
      expect(run.code, run.stdout.slice(-3000)).toBe(0);
      expect(extractionJobs(before)).toHaveLength(FEATURES + 1);
      expect(tableSessions(before)).toEqual([]);
      const manifest = JSON.parse((await gcs.readObject(OUTPUT, `${name}/training_${PAIR}.manifest.json`)).toString("utf8"));
      expect(manifest.run.bigqueryReads).toMatchObject({ tableReads: 0, queryJobs: FEATURES + 1 });
      // The same values as the local backend's (the manifest in the footer records the setting, so not the same bytes).
      const expected = pl.readParquet(reference);
      const actual = pl.readParquet((await trainingObject(name)).file);
      expect(actual.columns).toEqual(expected.columns);
      expect(expected.columns.filter((c) => !expected.getColumn(c).seriesEqual(actual.getColumn(c), true))).toEqual([]);
    },
    90_000,
  );

  it("fails with exit 1 naming roles/bigquery.readSessionUser when the service account may not create read sessions, before any extraction query job", async () => {
    bq.faults.readSessionDenied = true;
    const before = bq.requests.length;
    const run = await runJob(gcpEnv("no-read-sessions"));
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/PERMISSION_DENIED/);
    expect(run.stdout).toMatch(/bigquery\.readsessions\.create/);
    expect(run.stdout).toMatch(new RegExp(`grant roles/bigquery\\.readSessionUser on project ${bq.project}`));
    // Not retried: one refused session (the target's), and no query job to read a table.
    expect(
      bq.requests
        .slice(before)
        .filter((r) => r.method === "CreateReadSession")
        .map((r) => r.status),
    ).toEqual(["PERMISSION_DENIED"]);
    expect(extractionJobs(before)).toEqual([]);
    expect(gcs.getObject(OUTPUT, `no-read-sessions/${TRAINING}`)).toBeUndefined();
  }, 60_000);

  it("fails fast with exit 1 naming the role to grant when the features dataset denies access", async () => {
    bq.faults.accessDeniedDatasets.add(F);
    const before = bq.requests.length;
    const started = Date.now();
    const run = await runJob(gcpEnv("denied"));
    expect(run.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(run.stdout).toMatch(new RegExp(`accessDenied|[Pp]ermission denied|Access Denied`));
    expect(run.stdout).toMatch(new RegExp(`grant roles/bigquery\\.dataViewer on [^"]*${F}`));
    // Not retried: one datasets.get for the features dataset, no query jobs.
    const served = bq.requests.slice(before);
    expect(served.filter((r) => r.method === "datasets.get" && r.dataset === F)).toHaveLength(1);
    expect(served.filter((r) => r.method === "jobs.insert")).toEqual([]);
    expect(gcs.getObject(OUTPUT, `denied/${TRAINING}`)).toBeUndefined();
  }, 60_000);
});
