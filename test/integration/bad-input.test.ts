// Bad input, as Cloud Run would pass it: the real entrypoint as a child process. Every malformed
// variable is refused with exit 2 and one line naming it and what is accepted, before the job
// touches a warehouse (the local warehouse path does not even exist: reaching it would fail with
// exit 1 instead; the BigQuery and Cloud Storage stand-ins' request logs stay empty). An output
// location that cannot be written is refused before extraction starts.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { gcpStandInEnv, startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { ROOT, runJob, type JobRun } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../../standins/tiny-warehouse.ts";

const PAIR = "eurusd";
let dir: string;
let warehouse: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "bad-input-test-"));
  warehouse = path.join(dir, "warehouse.duckdb");
  await buildTinyWarehouse({ path: warehouse, pairs: [PAIR] });
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The one configuration line the job printed, parsed. */
function configProblems(run: JobRun): string[] {
  expect(run.code, run.stdout + run.stderr).toBe(2);
  const line = JSON.parse(run.stderr.trim()) as { severity: string; reason: string; problems: string[] };
  expect(line.severity).toBe("ERROR");
  expect(line.reason).toBe("config");
  return line.problems;
}

/** [variable, bad value, what the message must say is accepted] */
const BAD_INPUTS: ReadonlyArray<[string, string, RegExp]> = [
  ["TARGET_PAIR", "", /expected one of the 28 pairs/],
  ["TARGET_PAIR", "EURUSD", /did you mean eurusd/],
  ["TARGET_PAIR", "eurusdx", /six lower-case letters/],
  ["TARGET_PAIR", "abcdef", /one of eurusd gbpusd/],
  ["TARGET_PAIR", "eurusd'; DROP TABLE x--", /six lower-case letters/],
  ["TARGET_PAIR", "../../etc", /six lower-case letters/],
  ["ROW_LIMIT", "1e5", /whole number from 1/],
  ["ROW_LIMIT", "0", /whole number from 1/],
  ["MAX_WORKERS", "two", /whole number from 1 to 256/],
  ["MAX_WORKERS", "999", /whole number from 1 to 256/],
  ["EXTRACT_CONCURRENCY", "1.5", /whole number from 1 to 1,000/],
  ["MIN_ROWS", "-3", /whole number from 1/],
  ["MIN_COLUMNS", "10k", /whole number from 1/],
  ["MEMORY_BUDGET", "lots", /size of at least 64MiB like 3GiB/],
  ["MEMORY_BUDGET", "10MiB", /size of at least 64MiB/],
  ["MEMORY_BUDGET", "3 parsecs", /size of at least 64MiB/],
  ["QUERY_TIMEOUT", "forever", /duration from 1s to 6h/],
  ["QUERY_TIMEOUT", "0s", /duration from 1s to 6h/],
  ["KEEP_CHECKPOINTS", "true", /expected nothing: no checkpoints are written any more/],
  ["ROW_GROUP_ROWS", "4k", /whole number from 1/],
  ["DATE_FROM", "2020-13-01", /date like 2020-01-01/],
  ["DATE_TO", "yesterday", /date like 2020-01-01/],
  ["OUTPUT_URI", "s3://bucket", /local directory or gs:\/\//],
  ["OUTPUT_URI", "gs://Bad_Bucket!", /gs:\/\/<bucket>/],
  [
    "CHECKPOINT_URI",
    "gs://bqx-ml-staging/checkpoints",
    /expected nothing: parts are staged in OUTPUT_URI's own bucket, under <OUTPUT_URI>\/_staging\/<pair>\//,
  ],
  ["GCS_ENDPOINT", "ftp://x", /http\(s\) URL/],
  ["BACKEND", "aws", /"local".*or "gcp"/],
  ["FEATURES_DATASET", "a.b; drop", /letters, digits and underscores/],
  ["TARGETS_DATASET", "../x", /letters, digits and underscores/],
  ["LOG_LEVEL", "loud", /trace, debug, info/],
  ["LOG_FORMAT", "xml", /auto, json or pretty/],
  ["CLOUD_RUN_TASK_INDEX", "first", /whole number|task index/],
  ["FAULT_RATE", "0.9", /fraction above 0 and at most 0\.5/],
  ["FAULT_SEED", "7", /only together with FAULT_RATE/],
  ["FAULT_CORRUPT_UPLOADS", "sometimes", /true or false/],
];

describe("bad input is refused before any warehouse access", () => {
  it(`exits 2 naming the variable and what is accepted, for each of ${BAD_INPUTS.length} malformed values`, async () => {
    const missing = path.join(dir, "never-opened.duckdb");
    const runs: Array<[string, string, RegExp, JobRun]> = [];
    // Four at a time: each run is a Node start-up and nothing else.
    for (let i = 0; i < BAD_INPUTS.length; i += 4) {
      const batch = BAD_INPUTS.slice(i, i + 4);
      const done = await Promise.all(
        batch.map(([name, value]) =>
          runJob({ TARGET_PAIR: PAIR, WAREHOUSE: missing, OUTPUT_URI: path.join(dir, "out"), WORK_DIR: path.join(dir, "work"), [name]: value }),
        ),
      );
      batch.forEach(([name, value, accepted], j) => runs.push([name, value, accepted, done[j]!]));
    }
    for (const [name, value, accepted, run] of runs) {
      const problems = configProblems(run);
      const line = problems.find((p) => p.startsWith(`${name}: `) || p.startsWith(`${name}/`));
      expect(line, `${name}=${JSON.stringify(value)}: ${problems.join(" | ")}`).toBeDefined();
      expect(line).toMatch(accepted);
      // What was given is echoed back (JSON-quoted), so the user sees their own typo.
      if (value !== "") expect(line).toContain(JSON.stringify(value).slice(1, -1).slice(0, 8));
      // Nothing was started: no stdout log lines, no warehouse opened, no work dir or bucket made.
      expect(run.stdout).toBe("");
    }
    expect(existsSync(path.join(dir, "work"))).toBe(false);
    expect(existsSync(path.join(dir, "out"))).toBe(false);
  }, 90_000);

  it("refuses an output location that cannot be written before extracting anything", async () => {
    const notADirectory = path.join(dir, "a-file");
    await writeFile(notADirectory, "not a directory");
    const work = path.join(dir, "unwritable-work");
    const run = await runJob({
      TARGET_PAIR: PAIR,
      WAREHOUSE: warehouse,
      OUTPUT_URI: path.join(notADirectory, "bucket"),
      WORK_DIR: work,
      ...TINY_VALIDATION_ENV,
    });
    expect(run.code).toBe(1);
    const error = run.lines.find((l) => l.severity === "ERROR")!;
    expect(error.reason).toBe("output-not-writable");
    expect(String(error.message)).toMatch(
      /output location .*a-file\/bucket cannot be written.*Fix: set OUTPUT_URI to a directory this user can create and write/,
    );
    expect(run.lines.some((l) => l.stage === "extract")).toBe(false);
    expect(existsSync(work)).toBe(false);
  }, 30_000);
});

describe("bad input with BACKEND=gcp never reaches BigQuery or Cloud Storage", () => {
  let bq: StandIns;
  let gcs: GcsStandIn;
  beforeAll(async () => {
    bq = await startBigQueryStandIns({ warehouse, seed: 3 });
    gcs = await startGcsStandIn({ buckets: ["bqx-bad-input"] });
  }, 30_000);
  afterAll(async () => {
    await bq?.close();
    await gcs?.close();
  });
  const gcpEnv = (extra: Record<string, string>) => ({
    TARGET_PAIR: PAIR,
    ...gcpStandInEnv(bq, gcs.endpoint, { location: false }),
    OUTPUT_URI: "gs://bqx-bad-input/out",
    WORK_DIR: path.join(dir, "gcp-work"),
    ...TINY_VALIDATION_ENV,
    ...extra,
  });

  it("exits 2 with no request served for a pair that would be SQL injection and a malformed timeout", async () => {
    const run = await runJob(gcpEnv({ TARGET_PAIR: "eurusd'; DROP TABLE x--", QUERY_TIMEOUT: "soon", BQ_LOCATION: "us central" }));
    expect(configProblems(run).map((p) => p.split(":")[0])).toEqual(["TARGET_PAIR", "BQ_LOCATION", "QUERY_TIMEOUT"]);
    expect(bq.requests).toEqual([]);
    expect(gcs.requests).toEqual([]);
  }, 30_000);

  it("exits 2 for plain http:// endpoints off this machine, naming each variable and https:// as the fix", async () => {
    const run = await runJob(
      gcpEnv({
        BIGQUERY_ENDPOINT: "http://bigquery.example.com",
        BIGQUERY_STORAGE_ENDPOINT: "http://10.1.2.3:9051",
        GCS_ENDPOINT: "http://storage.example.com:80",
      }),
    );
    const problems = configProblems(run);
    expect(problems.map((p) => p.split(":")[0])).toEqual(["GCS_ENDPOINT", "BIGQUERY_ENDPOINT", "BIGQUERY_STORAGE_ENDPOINT"]);
    for (const p of problems) expect(p).toMatch(/expected https:\/\/ for a remote endpoint, or http:\/\/ only on a loopback address/);
    expect(bq.requests).toEqual([]);
    expect(gcs.requests).toEqual([]);
  }, 30_000);

  it("the validation script refuses a plain http:// GCS_ENDPOINT off this machine too (exit 2), before any credential is looked up", async () => {
    const run = await runJob({ GCS_ENDPOINT: "http://storage.example.com" }, { script: path.join(ROOT, "scripts", "operator", "validate-object.ts") });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(
      /^GCS_ENDPOINT: expected https:\/\/ for a remote endpoint, or http:\/\/ only on a loopback address .* \(got "http:\/\/storage\.example\.com"\)$/m,
    );
    expect(gcs.requests).toEqual([]);
  }, 30_000);

  it("refuses a Cloud Storage output that denies writes before any query job, naming the bucket", async () => {
    gcs.faults.deny("bqx-bad-input", ["storage.objects.create"]);
    try {
      const run = await runJob(gcpEnv({}));
      expect(run.code).toBe(1);
      expect(run.stdout).toMatch(/gs:\/\/bqx-bad-input\/out/);
      expect(run.stdout).toMatch(/storage\.objects\.create|roles\/storage/);
      expect(bq.requests.filter((r) => r.method === "jobs.insert")).toEqual([]);
      expect(run.lines.some((l) => l.stage === "extract")).toBe(false);
    } finally {
      gcs.faults.allow("bqx-bad-input");
    }
  }, 60_000);
});
