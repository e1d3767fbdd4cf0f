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
import { createReadClient } from "../../src/warehouse/bigquery-clients.ts";
import { probeReadSession } from "../../src/warehouse/bigquery-read.ts";
import { tableRowRestriction } from "../../src/warehouse/bigquery-sql.ts";
import { gcpStandInEnv, startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { runJob } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../../standins/tiny-warehouse.ts";

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
async function rest(
  s: StandIns,
  method: "GET" | "POST",
  route: string,
  body?: unknown,
): Promise<{ status: number; body: { error?: { code: number; message: string; errors: Array<{ reason: string }> } } & Record<string, unknown> }> {
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
    const params = await rest(us, "POST", "queries", {
      query: "SELECT @x AS x",
      parameterMode: "NAMED",
      queryParameters: [{ name: "x", parameterType: { type: "INT64" }, parameterValue: { value: "1" } }],
    });
    expect(params.status).toBe(400);
    expect(params.body.error?.errors[0]?.reason).toBe("invalidQuery");
    expect(params.body.error?.message).toMatch(/Query parameters cannot be used in legacy SQL/);
    // The same queries as GoogleSQL: explicitly, or by the #standardSQL prefix.
    expect(
      (
        await rest(us, "POST", "queries", {
          query: "SELECT @x AS x",
          useLegacySql: false,
          parameterMode: "NAMED",
          queryParameters: [{ name: "x", parameterType: { type: "INT64" }, parameterValue: { value: "1" } }],
        })
      ).status,
    ).toBe(200);
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
    expect(inserted.map((r) => [r.status, r.useLegacySql])).toEqual([
      [200, false],
      [200, false],
    ]);
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
    expect((err as unknown as JobError).fix).toBe(
      `grant roles/bigquery.jobUser on project ${us.project} to the job's service account (it runs the query jobs)`,
    );
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
    expect(
      us.requests
        .slice(seen)
        .filter((r) => r.method === "jobs.insert")
        .map((r) => r.status),
    ).toEqual([403, 403]);
  }, 60_000);
});

describe("dry runs (PLAN_ONLY)", () => {
  const targetSql = (s: StandIns) =>
    `SELECT \`interval_time\`, \`target_bqx45_h15\` FROM \`${s.project}.${T}.targets_${PAIR}\` WHERE DATE(\`interval_time\`) BETWEEN @date_from AND @date_to`;
  const params = { date_from: BigQuery.date("2020-01-01"), date_to: BigQuery.date("2024-12-31") };

  it("answers a DONE job with totalBytesProcessed as strings, reads no row and stores no job: jobs.get on its id is a 404", async () => {
    const served = { ...us.served };
    const before = us.requests.length;
    const [job, response] = await client(us).createQueryJob({ query: targetSql(us), params, useLegacySql: false, dryRun: true, jobId: "bqx_plan_probe" });
    const body = response as unknown as {
      status: { state: string };
      statistics: { totalBytesProcessed: unknown; query: { totalBytesProcessed: unknown } };
      configuration: { dryRun: boolean };
    };
    expect(body.status.state).toBe("DONE");
    expect(body.configuration.dryRun).toBe(true);
    // Every row of the two columns named, 8 bytes a value, whatever the WHERE keeps.
    const rows = (await client(us).query({ query: `SELECT COUNT(*) AS n FROM \`${us.project}.${T}.targets_${PAIR}\``, useLegacySql: false }))[0][0].n as number;
    expect(body.statistics.totalBytesProcessed).toBe(String(rows * 2 * 8));
    expect(body.statistics.query.totalBytesProcessed).toBe(String(rows * 2 * 8));
    expect((await rest(us, "GET", `jobs/${job.id}`)).status).toBe(404);
    expect(us.requests.slice(before).find((r) => r.dryRun)).toMatchObject({ method: "jobs.insert", status: 200, bytesProcessed: rows * 16 });
    // The COUNT(*) above read a table (one row); the dry run read none.
    expect(us.served.tableRows - served.tableRows).toBe(1);
  });

  it("refuses what a real query would refuse, as the insert's own HTTP error: an unknown column, legacy SQL, no bigquery.jobs.create", async () => {
    const bq = client(us);
    const unknown = await rejection(
      bq.createQueryJob({ query: targetSql(us).replace("`target_bqx45_h15`", "`no_such_column`"), params, useLegacySql: false, dryRun: true }),
    );
    expect(unknown.code).toBe(400);
    expect(unknown.message).toMatch(/no_such_column/);
    const legacy = await rejection(
      rest(us, "POST", "jobs", { configuration: { dryRun: true, query: { query: targetSql(us) } } }).then((r) =>
        r.status === 200 ? r : Promise.reject(Object.assign(new Error(r.body.error?.message), { code: r.status })),
      ),
    );
    expect(legacy.code).toBe(400);
    expect(legacy.message).toMatch(/Invalid table name/);
    us.faults.jobsCreateDenied = true;
    const denied = await rejection(bq.createQueryJob({ query: targetSql(us), params, useLegacySql: false, dryRun: true }));
    expect(denied.code).toBe(403);
    expect(denied.message).toMatch(/bigquery\.jobs\.create/);
  });

  it("gives the adapter's estimateReads one dry run per table, each equal to the bytes a read session on the same columns estimates", async () => {
    const bq = new BigQueryWarehouse({
      project: us.project,
      apiEndpoint: us.bigqueryEndpoint,
      storageReadEndpoint: us.storageEndpoint,
      queryTimeoutMs: 20_000,
      retry: FAST_RETRY,
    });
    const columns = [{ source: "target_bqx45_h15", target: "target_bqx45_h15", type: "DOUBLE" }];
    const read = {
      dataset: T,
      table: `targets_${PAIR}`,
      columns,
      dateFrom: "2020-01-01",
      dateTo: "2024-12-31",
      rowLimit: undefined,
      notNullColumn: "target_bqx45_h15",
    };
    const before = us.requests.length;
    const estimate = await bq.estimateReads([
      read,
      { ...read, dataset: F, table: `agg_${PAIR}`, columns: [{ source: "x", target: "agg_x", type: "BIGINT" }], notNullColumn: undefined },
    ]);
    expect(estimate).toMatchObject({ measured: true, dryRuns: 2 });
    await bq.checkReadAccess(read);
    expect(
      us.requests
        .slice(before)
        .filter((r) => r.method === "CreateReadSession")
        .map((r) => r.status),
    ).toEqual(["OK"]);
    const readClient = await createReadClient(us.project, us.storageEndpoint);
    try {
      const session = await probeReadSession(
        readClient,
        { projectId: us.project, datasetId: T, tableId: `targets_${PAIR}` },
        { project: us.project, ctx: { action: "test", project: us.project } },
        {
          selectedFields: ["interval_time", "target_bqx45_h15"],
          rowRestriction: tableRowRestriction(read),
          maxStreamCount: 1,
        },
      );
      expect(session.estimatedBytesScanned).toBe(estimate.bytes[0]);
    } finally {
      await readClient.close();
    }
    expect(us.requests.slice(before).filter((r) => r.method === "ReadRows")).toEqual([]);
    const dryRuns = us.requests.slice(before).filter((r) => r.dryRun);
    expect(dryRuns.map((r) => r.bytesProcessed)).toEqual(estimate.bytes);
    expect(estimate.bytes[0]).toBe(estimate.bytes[1]); // two 8-byte columns of 40 rows each
  });
});
