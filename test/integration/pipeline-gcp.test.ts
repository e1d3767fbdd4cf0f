// The whole job with BACKEND=gcp, as a child process, against the BigQuery (REST + Storage Read)
// and Cloud Storage stand-ins running in this process over a small sample warehouse. Its training
// file must be identical to what the embedded backend builds from the same warehouse, clean or
// under transient faults; checkpoints staged in CHECKPOINT_URI must let a fresh container resume.
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pl from "nodejs-polars";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GcsBucket } from "../../src/bucket/gcs.ts";
import { buildSampleWarehouse } from "../../src/sample/build.ts";
import { sampleTables } from "../../src/sample/spec.ts";
import { schemaSha256 } from "../../src/schema-hash.ts";
import { startBigQueryStandIns, type StandIns } from "../support/bigquery-standin.ts";
import { startGcsStandIn, type GcsStandIn } from "../support/gcs-standin.ts";
import { namesIn, points, startJob, waitFor } from "../support/job-process.ts";
import { runJob, type JobRun } from "../support/run-job.ts";
import { readFooterSummary } from "../../src/parquet/footer.ts";

const PAIR = "eurusd";
const ROWS = 300;
/** Feature tables copied from the 667 of the sample: every family, a quick run. */
const FEATURES = 40;
const F = "bqx_ml_v3_features_v2";
const OUTPUT = "bqx-test-output";
const STAGING = "bqx-test-staging";
const TRAINING = `training_${PAIR}.parquet`;

let dir: string;
let warehouse: string;
let bq: StandIns;
let gcs: GcsStandIn;
/** The embedded backend's training file for the same warehouse. */
let reference: string;
/** The feature tables in the sample warehouse, sorted. */
let featureNames: string[];

const sha256 = async (file: string) => createHash("sha256").update(await readFile(file)).digest("hex");
const messages = (run: JobRun) => run.lines.map((l) => String(l.message));

function gcpEnv(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TARGET_PAIR: PAIR,
    BACKEND: "gcp",
    GCP_PROJECT: bq.project,
    BQ_LOCATION: bq.location,
    BIGQUERY_ENDPOINT: bq.bigqueryEndpoint,
    BIGQUERY_STORAGE_ENDPOINT: bq.storageEndpoint,
    GCS_ENDPOINT: gcs.endpoint,
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

function stagingBucket(name: string): GcsBucket {
  return new GcsBucket(`gs://${STAGING}/${name}`, { apiEndpoint: gcs.endpoint });
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
  await buildSampleWarehouse({ path: warehouse, pair: PAIR, rows: ROWS, only: (t) => t.dataset === "targets" ? t.name === `targets_${PAIR}` : kept.has(t.name) || !t.hasIntervalTime });
  // Small Arrow batches, so a ReadRows stream carries several and can be dropped midway.
  bq = await startBigQueryStandIns({ warehouse, batchRows: 100, seed: 11 });
  gcs = await startGcsStandIn({ buckets: [OUTPUT, STAGING] });
  const local = await runJob({ TARGET_PAIR: PAIR, WAREHOUSE: warehouse, OUTPUT_URI: path.join(dir, "local", "bucket"), WORK_DIR: path.join(dir, "local", "work"), MIN_ROWS: "100", MIN_COLUMNS: "100", MAX_WORKERS: "2" });
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

describe("the five-stage pipeline with BACKEND=gcp", () => {
  it("exits 0 with a training file identical to the local backend's, described by its object metadata", async () => {
    const run = await runJob(gcpEnv("clean"));
    expect(run.stderr).toBe("");
    expect(run.code, run.stdout.slice(-3000)).toBe(0);

    expect(messages(run)[0]).toMatch(new RegExp(`^building training_eurusd\\.parquet with BACKEND=gcp: BigQuery project ${bq.project} in US at http://127\\.0\\.0\\.1:\\d+; output gs://${OUTPUT}/clean; checkpoints kept in the work dir only`));
    expect(messages(run)).toContain("extraction pool: 2 workers (from MAX_WORKERS) x 16 tables each = 32 tables in flight (from EXTRACT_CONCURRENCY=32, default 32 for BACKEND=gcp)");
    expect(messages(run)).toContainEqual(expect.stringMatching(new RegExp(`^extracted ${FEATURES + 1}/${FEATURES + 1} `)));

    const obj = await trainingObject("clean");
    await expectSameContentAsLocal(obj.file);
    const manifest = JSON.parse((await gcs.readObject(OUTPUT, `clean/training_${PAIR}.manifest.json`)).toString("utf8"));
    expect(obj.metadata).toEqual({
      pair: PAIR,
      rows: String(manifest.rows),
      columns: String(manifest.columns),
      schema_sha256: await schemaSha256(reference),
      sha256: await sha256(reference),
    });
    expect(manifest.file.generation).toBe(obj.generation);
    expect(manifest.config).toMatchObject({ BACKEND: "gcp", GCP_PROJECT: bq.project, OUTPUT_URI: `gs://${OUTPUT}/clean` });
  }, 90_000);

  it("exits 0 with identical content through 20% transient BigQuery and Cloud Storage faults and a dropped ReadRows stream", async () => {
    bq.faults.restErrorRate = 0.2;
    bq.faults.readRowsDrops.push({ afterBatches: 1, mode: "unavailable", count: 1 });
    // Not on deletes and simple (probe) uploads: the library never retries those and the adapter
    // tries them 3 times, so at 20% one call in 125 fails for real, and the cleanup's 41 deletes
    // would make this test fail one run in four.
    gcs.faults.configure({ failRate: 0.2, failStatus: 503, seed: 5, failKinds: ["bucket", "list", "metadata", "media", "upload-start", "upload-chunk", "upload-status"] });
    // And certainly some on the way the training file goes up, whatever the draws.
    gcs.faults.failNext(1, 503, ["upload-start"]);
    gcs.faults.failNext(1, 429, ["upload-chunk"]);
    const bqBefore = bq.requests.length;
    const gcsBefore = gcs.requests.length;
    // Without CHECKPOINT_URI: staging under faults is correct but slow here (the storage library
    // backs off at least a second per retry), and put() is the same call as the final upload's.
    const run = await runJob(gcpEnv("faults"));
    expect(run.code, run.stdout.slice(-3000)).toBe(0);

    const rest = bq.requests.slice(bqBefore).filter((r) => r.api === "bigquery");
    expect(rest.filter((r) => r.status === 429 || r.status === 503).length).toBeGreaterThan(rest.length * 0.1);
    const resumed = bq.requests.slice(bqBefore).filter((r) => r.method === "ReadRows" && (r.offset ?? 0) > 0);
    expect(resumed.length).toBe(1);
    expect(gcs.requests.slice(gcsBefore).filter((r) => r.injected).length).toBeGreaterThanOrEqual(2);
    // The tables that met a fault say so, with how many requests were retried.
    expect(run.lines.filter((l) => typeof l.retries === "number" && /^extracted \w+ after \d+ retried/.test(String(l.message))).length).toBeGreaterThan(0);

    await expectSameContentAsLocal((await trainingObject("faults")).file);
  }, 120_000);

  it("stages checkpoints in CHECKPOINT_URI so a run in a fresh container restores them instead of querying, then removes them", async () => {
    const env = (work: string, extra: Record<string, string> = {}) => gcpEnv("resume", { CHECKPOINT_URI: `gs://${STAGING}/resume`, WORK_DIR: path.join(dir, work), ...extra });
    // A run that fails after extraction (validation refuses the file): nothing is uploaded, the checkpoints stay staged.
    const failed = await runJob(env("work-a", { MIN_ROWS: "1000000" }));
    expect(failed.code).toBe(1);
    expect(failed.stdout).toMatch(/rows: \d+ < MIN_ROWS 1000000/);
    expect(gcs.getObject(OUTPUT, `resume/${TRAINING}`)).toBeUndefined();
    const staged = stagingBucket("resume");
    const names = await staged.list();
    expect(names).toHaveLength(FEATURES + 1);
    expect(names.every((n) => n.startsWith(`${PAIR}/checkpoints/`) && n.endsWith(".parquet"))).toBe(true);
    const info = await staged.stat(names[0]!);
    expect(info?.metadata.fingerprint).toMatch(/^[0-9a-f]{64}$/);

    // A stored checkpoint for another query (say, another date range) is ignored and replaced.
    const target = `${PAIR}/checkpoints/bqx_ml_v3_analytics_v2.targets_${PAIR}.parquet`;
    const original = gcs.getObject(STAGING, `resume/${target}`)!;
    await gcs.putObject(STAGING, `resume/${target}`, await gcs.readObject(STAGING, `resume/${target}`), { ...original.metadata, fingerprint: "0".repeat(64) });

    const queriesBefore = bq.requests.length;
    const resumed = await runJob(env("work-b"));
    expect(resumed.code, resumed.stdout.slice(-3000)).toBe(0);
    expect(messages(resumed)).toContainEqual(expect.stringMatching(new RegExp(`^restored ${FEATURES} checkpoints from CHECKPOINT_URI gs://${STAGING}/resume/eurusd/checkpoints/ \\(${FEATURES + 1} stored, 1 for another query, extracted again\\)$`)));
    const jobs = bq.requests.slice(queriesBefore).filter((r) => r.method === "jobs.insert");
    const extractions = jobs.filter((r) => !/INFORMATION_SCHEMA/.test(r.query ?? ""));
    expect(extractions.map((r) => /FROM `[^`]*\.([\w]+)`/.exec(r.query ?? "")?.[1])).toEqual([`targets_${PAIR}`]);
    expect(resumed.lines.find((l) => l.stage === "extract" && l.extracted !== undefined)).toMatchObject({ extracted: 1, restored: FEATURES, staged: 1 });

    await expectSameContentAsLocal((await trainingObject("resume")).file);
    expect(messages(resumed)).toContain(`removed ${FEATURES + 1} staged checkpoints from gs://${STAGING}/resume/eurusd/checkpoints/`);
    expect(await staged.list()).toEqual([]);
  }, 120_000);

  it("on SIGTERM with two tables whose queries never finish, abandons them after the grace and exits 130 within 8 s, checkpoints whole", async () => {
    // The slow-table case of a shutdown: the tables in flight get 5 s to finish, then the pool is
    // torn down. Two queries hang (the stand-in never completes their jobs) while the rest land.
    const hung = [featureNames[3]!, featureNames[17]!];
    for (const t of hung) bq.faults.hangingTables.add(`${F}.${t}`);
    const e = gcpEnv("term-hung", { QUERY_TIMEOUT: "10m" });
    const job = startJob(e);
    // Every table but the two hung ones (40 features + the target - 2) has its checkpoint.
    expect(await waitFor(job, points(e.WORK_DIR!, "", PAIR).landed(FEATURES + 1 - hung.length), 20)).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(job.exited()).toBe(false);
    const sent = performance.now();
    job.child.kill("SIGTERM");
    const run = await job.done;
    const elapsed = performance.now() - sent;
    console.log(`pipeline-gcp: SIGTERM with 2 hung queries in flight: exit ${run.code} after ${Math.round(elapsed)} ms`);
    expect(run.code, run.stdout.slice(-2000)).toBe(130);
    expect(elapsed).toBeLessThan(8_000);
    const said = messages(run);
    expect(said).toContainEqual(expect.stringMatching(new RegExp(`^extraction stopped: ${FEATURES + 1 - hung.length} tables extracted by this attempt and 0 reused are kept as checkpoints for the next attempt; 2 not extracted`)));
    expect(said).toContain("stage extract failed: interrupted (Error: received SIGTERM)");
    const checkpoints = path.join(e.WORK_DIR!, PAIR, "checkpoints");
    const kept = namesIn(checkpoints).filter((n) => !n.includes(".tmp-"));
    expect(kept).toHaveLength(FEATURES + 1 - hung.length);
    for (const t of hung) expect(kept.some((n) => n.endsWith(`.${t}.parquet`)), t).toBe(false);
    for (const name of kept) await expect(readFooterSummary(path.join(checkpoints, name)), name).resolves.toBeDefined();
    expect(gcs.getObject(OUTPUT, `term-hung/${TRAINING}`)).toBeUndefined();

    // The queries answer again: the next attempt extracts only the two and builds the same file.
    bq.faults.hangingTables.clear();
    const again = await runJob(e);
    expect(again.code, again.stdout.slice(-2000)).toBe(0);
    expect(messages(again)).toContainEqual(expect.stringMatching(/^reusing 39 checkpoints from an earlier attempt/));
    await expectSameContentAsLocal((await trainingObject("term-hung")).file);
  }, 120_000);

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
