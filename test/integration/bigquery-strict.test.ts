// The BigQuery REST stand-in is as strict as BigQuery where leniency would hide a bug in the job:
// jobs live in a location and are found only there, queries without `useLegacySql: false` are
// legacy SQL, and a service account without bigquery.jobs.create gets BigQuery's 403. Each is
// driven through the real @google-cloud/bigquery client, then through the job itself.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { BigQuery } from "@google-cloud/bigquery";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_FEATURES_DATASET as F, DEFAULT_TARGETS_DATASET as T } from "../../src/constants.ts";
import { JobError } from "../../src/errors.ts";
import { authClientForEndpoint } from "../../src/gcp/auth.ts";
import { BigQueryWarehouse } from "../../src/warehouse/bigquery.ts";
import { gcpStandInEnv, startBigQueryStandIns, type StandIns } from "../support/bigquery-standin.ts";
import { startGcsStandIn, type GcsStandIn } from "../support/gcs-standin.ts";
import { runJob } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../support/tiny-warehouse.ts";

const PAIR = "eurusd";
const REGION = "europe-west2";
const FAST_RETRY = { attempts: 5, baseDelayMs: 20, maxDelayMs: 200 };

let dir: string;
let warehouse: string;
/** Datasets in the US multi-region (the stand-in's default). */
let us: StandIns;
/** Datasets in a single region. */
let regional: StandIns;
let gcs: GcsStandIn;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "bigquery-strict-test-"));
  warehouse = path.join(dir, "warehouse.duckdb");
  await buildTinyWarehouse({ path: warehouse, pairs: [PAIR] });
  [us, regional, gcs] = await Promise.all([
    startBigQueryStandIns({ warehouse, seed: 5 }),
    startBigQueryStandIns({ warehouse, seed: 6, location: REGION, project: "bqx-regional" }),
    startGcsStandIn({ buckets: ["bqx-strict"] }),
  ]);
}, 60_000);

afterEach(() => {
  for (const s of [us, regional]) Object.assign(s.faults, { restErrors: [], jobsCreateDenied: false });
});

afterAll(async () => {
  await Promise.all([us?.close(), regional?.close(), gcs?.close()]);
  await rm(dir, { recursive: true, force: true });
});

function client(s: StandIns): BigQuery {
  const authClient = authClientForEndpoint(s.bigqueryEndpoint);
  return new BigQuery({ projectId: s.project, apiEndpoint: s.bigqueryEndpoint, ...(authClient ? { authClient } : {}), retryOptions: { autoRetry: false } });
}

const tablesSql = (s: StandIns) => `SELECT table_name FROM \`${s.project}.${F}\`.INFORMATION_SCHEMA.TABLES ORDER BY table_name`;

/** The error a promise rejects with (it must reject). */
async function rejection(p: Promise<unknown>): Promise<Record<string, unknown> & Error> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Error);
  return err as Record<string, unknown> & Error;
}

/** A REST call as any client would send it, with the stand-in's placeholder token. */
async function rest(s: StandIns, method: "GET" | "POST", route: string, body?: unknown): Promise<{ status: number; body: { error?: { code: number; message: string; errors: Array<{ reason: string }> } } & Record<string, unknown> }> {
  const res = await fetch(`${s.bigqueryEndpoint}/bigquery/v2/projects/${s.project}/${route}`, {
    method,
    headers: { authorization: "Bearer bqx-standin-token", "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as never };
}

describe("job locations", () => {
  it("finds a job in a single region only with its location, as BigQuery does: 404 Not found: Job <project>:<jobId> otherwise", async () => {
    const bq = client(regional);
    const [job] = await bq.createQueryJob({ query: tablesSql(regional) });
    // BigQuery placed the job with its dataset, and the client keeps the location it was told.
    expect(job.location).toBe(REGION);
    const [rows] = await job.getQueryResults();
    expect(rows.length).toBeGreaterThan(0);

    const lost = await rejection(bq.job(job.id!).getMetadata());
    expect(lost.code).toBe(404);
    expect(lost.message).toBe(`Not found: Job ${regional.project}:${job.id}`);
    expect((lost.errors as Array<{ reason: string }>)[0]?.reason).toBe("notFound");
    const elsewhere = await rejection(bq.job(job.id!, { location: "US" }).getQueryResults());
    expect(elsewhere.code).toBe(404);
    expect(elsewhere.message).toBe(`Not found: Job ${regional.project}:US.${job.id}`);
    expect((await rest(regional, "POST", `jobs/${job.id}/cancel`)).status).toBe(404);
    // Location names are not case-sensitive.
    const [meta] = await bq.job(job.id!, { location: REGION.toUpperCase() }).getMetadata();
    expect(meta.status?.state).toBe("DONE");
  });

  it("finds a job in the US multi-region without a location, and not in another one", async () => {
    const bq = client(us);
    const [job] = await bq.createQueryJob({ query: tablesSql(us) });
    expect(job.location).toBe("US");
    await job.getQueryResults();
    const [meta] = await bq.job(job.id!).getMetadata();
    expect(meta.jobReference?.location).toBe("US");
    expect((await rejection(bq.job(job.id!, { location: "EU" }).getMetadata())).code).toBe(404);
  });

  it("does not find the datasets from a job placed in another location", async () => {
    // The insert answers with the job already DONE and failed; the client raises its error.
    const err = await rejection(client(regional).createQueryJob({ query: tablesSql(regional), location: "US" }));
    expect(err.message).toBe(`Not found: Dataset ${regional.project}:${F} was not found in location US`);
  });

  it("discovers a regional warehouse without BQ_LOCATION even when an insert's answer is lost (the retry meets its own job)", async () => {
    regional.faults.restErrors.push({ method: "jobs.insert", status: 503, reason: "backendError", count: 1, afterServing: true });
    const seen = regional.requests.length;
    const bq = new BigQueryWarehouse({ project: regional.project, apiEndpoint: regional.bigqueryEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY });
    const tables = await bq.listTables(F);
    expect(tables.map((t) => t.name)).toContain(`agg_${PAIR}`);
    const calls = regional.requests.slice(seen).map((r) => `${r.method} ${r.status}`);
    expect(calls[0]).toBe("jobs.insert 503");
    expect(calls).toContain("jobs.insert 409");
    expect(calls.filter((c) => c.endsWith(" 404"))).toEqual([]);
  });
});

describe("SQL dialect", () => {
  it("parses a query as legacy SQL when useLegacySql is absent, as the REST API's default says, and refuses GoogleSQL sent that way", async () => {
    const named = await rest(us, "POST", "queries", {
      query: `SELECT table_name FROM \`${us.project}.${F}\`.INFORMATION_SCHEMA.TABLES WHERE table_name = @name`,
      parameterMode: "NAMED",
      queryParameters: [{ name: "name", parameterType: { type: "STRING" }, parameterValue: { value: `agg_${PAIR}` } }],
    });
    expect(named.status).toBe(400);
    expect(named.body.error?.message).toMatch(/^Invalid table name: `bqx-standin\.bqx_ml_v3_features_v2` \[Try using standard SQL/);
    const params = await rest(us, "POST", "queries", { query: "SELECT @x AS x", parameterMode: "NAMED", queryParameters: [{ name: "x", parameterType: { type: "INT64" }, parameterValue: { value: "1" } }] });
    expect(params.status).toBe(400);
    expect(params.body.error?.errors[0]?.reason).toBe("invalidQuery");
    expect(params.body.error?.message).toMatch(/Query parameters cannot be used in legacy SQL/);
    // The same queries as GoogleSQL: explicitly, or by the #standardSQL prefix.
    expect((await rest(us, "POST", "queries", { query: "SELECT @x AS x", useLegacySql: false, parameterMode: "NAMED", queryParameters: [{ name: "x", parameterType: { type: "INT64" }, parameterValue: { value: "1" } }] })).status).toBe(200);
    expect((await rest(us, "POST", "queries", { query: `#standardSQL\n${tablesSql(us)}` })).status).toBe(200);
  });

  it("fails a query job sent with useLegacySql: true, reporting the dialect on the job", async () => {
    const err = await rejection(client(us).createQueryJob({ query: tablesSql(us), useLegacySql: true }));
    expect(err.message).toMatch(/^Invalid table name: `bqx-standin\.bqx_ml_v3_features_v2` \[Try using standard SQL/);
    const job = err.response as { configuration: { query: { useLegacySql: boolean } }; status: { state: string; errorResult: { reason: string } } };
    expect(job.configuration.query.useLegacySql).toBe(true);
    expect(job.status.state).toBe("DONE");
    expect(job.status.errorResult.reason).toBe("invalid");
  });

  it("gets GoogleSQL from the job: every query it inserts says useLegacySql: false", async () => {
    const seen = us.requests.length;
    const bq = new BigQueryWarehouse({ project: us.project, apiEndpoint: us.bigqueryEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY });
    expect((await bq.listTables(T)).map((t) => t.name)).toEqual([`targets_${PAIR}`]);
    const inserted = us.requests.slice(seen).filter((r) => r.method === "jobs.insert");
    expect(inserted.map((r) => [r.status, r.useLegacySql])).toEqual([[200, false], [200, false]]);
  });
});

describe("bigquery.jobs.create denied", () => {
  it("answers jobs.insert and jobs.query with BigQuery's 403", async () => {
    us.faults.jobsCreateDenied = true;
    const err = await rejection(client(us).createQueryJob({ query: tablesSql(us) }));
    expect(err.code).toBe(403);
    expect(err.message).toBe(`Access Denied: Project ${us.project}: User does not have bigquery.jobs.create permission in project ${us.project}.`);
    expect((err.errors as Array<{ reason: string }>)[0]?.reason).toBe("accessDenied");
    expect((await rest(us, "POST", "queries", { query: tablesSql(us), useLegacySql: false })).status).toBe(403);
  });

  it("fails discovery at once, without retrying, naming roles/bigquery.jobUser on the project", async () => {
    us.faults.jobsCreateDenied = true;
    const seen = us.requests.length;
    const bq = new BigQueryWarehouse({ project: us.project, apiEndpoint: us.bigqueryEndpoint, queryTimeoutMs: 20_000, retry: FAST_RETRY });
    const err = await rejection(bq.listTables(F));
    expect(err).toBeInstanceOf(JobError);
    expect((err as unknown as JobError).reason).toBe("bigquery-access-denied");
    expect((err as unknown as JobError).fix).toBe(`grant roles/bigquery.jobUser on project ${us.project} to the job's service account (it runs the query jobs)`);
    // Two discovery queries were tried once each.
    expect(us.requests.slice(seen).map((r) => `${r.method} ${r.status}`)).toEqual(["jobs.insert 403", "jobs.insert 403"]);
  });
});

describe("the job against the strict stand-in", () => {
  const env = (s: StandIns, extra: Record<string, string> = {}) => ({
    TARGET_PAIR: PAIR,
    ...gcpStandInEnv(s, gcs.endpoint, { location: false }),
    OUTPUT_URI: `gs://bqx-strict/${s.project}`,
    WORK_DIR: path.join(dir, `work-${s.project}`),
    ...TINY_VALIDATION_ENV,
    ...extra,
  });

  it("builds the file from a regional warehouse without BQ_LOCATION, a lost insert answer included", async () => {
    regional.faults.restErrors.push({ method: "jobs.insert", status: 503, reason: "backendError", count: 1, afterServing: true });
    const seen = regional.requests.length;
    const run = await runJob(env(regional), { timeoutMs: 120_000 });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const calls = regional.requests.slice(seen);
    expect(calls.some((r) => r.method === "jobs.insert" && r.status === 409)).toBe(true);
    expect(calls.filter((r) => r.status === 404)).toEqual([]);
    // Discovery and extraction alike say GoogleSQL explicitly on every query job.
    const inserts = calls.filter((r) => r.method === "jobs.insert");
    expect(inserts.length).toBeGreaterThanOrEqual(2);
    expect(inserts.filter((r) => r.useLegacySql !== false)).toEqual([]);
  }, 120_000);

  it("exits 1 within seconds when its service account may not create query jobs, naming roles/bigquery.jobUser, with no retry", async () => {
    us.faults.jobsCreateDenied = true;
    const seen = us.requests.length;
    const started = Date.now();
    const run = await runJob(env(us), { timeoutMs: 60_000 });
    expect(run.code, run.stdout + run.stderr).toBe(1);
    expect(Date.now() - started).toBeLessThan(15_000);
    const failure = run.lines.find((l) => l.severity === "ERROR" && (l.fix ?? "").includes("roles/bigquery.jobUser"));
    expect(failure, run.stdout).toBeDefined();
    expect(String(failure?.fix)).toContain(`roles/bigquery.jobUser on project ${us.project} to the job's service account`);
    expect(us.requests.slice(seen).filter((r) => r.method === "jobs.insert").map((r) => r.status)).toEqual([403, 403]);
  }, 60_000);
});
