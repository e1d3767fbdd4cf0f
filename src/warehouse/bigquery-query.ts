// Running one BigQuery query job to completion: insert, wait with a deadline (cancelling the job
// when it passes), re-run a job that finished with a transient error, and page its rows.
import { randomUUID } from "node:crypto";
import type { BigQuery, DatasetResource, Job, JobMetadata } from "@google-cloud/bigquery";
import { JobError } from "../errors.ts";
import { BigQueryJobFailure, describeFault, isRetryableGoogleError, toJobError, type FailureContext } from "../gcp/errors.ts";
import { withRetry, type RetryPolicy } from "../retry.ts";
import { retryPolicy, type RetryNotice } from "./bigquery-clients.ts";
import type { GcpRetrySettings } from "./port.ts";

/** Longest single wait the server is asked to hold a getQueryResults call (BigQuery's default is 10 s). */
const LONG_POLL_MS = 10_000;
/** How much longer than the long poll an unanswered call may take before it counts as "not yet". */
const POLL_GRACE_MS = 15_000;
const CANCEL_WAIT_MS = 5_000;

/** A BigQuery identifier or path in backticks (GoogleSQL quoted identifier). */
export function quoteBigQueryIdent(name: string): string {
  return "`" + name.replaceAll("\\", "\\\\").replaceAll("`", "\\`") + "`";
}

export interface QueryRequest {
  sql: string;
  /** Named parameters, values as the client library takes them (e.g. `BigQuery.date("2020-01-01")`). */
  params?: Record<string, unknown>;
  timeoutMs: number;
  /** Job id prefix naming the work in the BigQuery console, e.g. "bqx_extract". */
  jobPrefix: string;
}

export interface QueryEnv {
  retry?: GcpRetrySettings | undefined;
  ctx: FailureContext;
  onRetry?: ((notice: RetryNotice) => void) | undefined;
}

export interface TableRef {
  projectId: string;
  datasetId: string;
  tableId: string;
}

export interface FinishedQuery {
  job: Job;
  /** Where BigQuery put the result: an anonymous table for a plain SELECT. */
  destination: TableRef;
}

/** One request retried on transient errors; a job that *finished* failing is left to `runQueryJob`. */
function callPolicy(env: QueryEnv, what: string): RetryPolicy {
  const base = retryPolicy(env.retry, "bigquery", what, env.onRetry);
  const retryable = isRetryableGoogleError("bigquery");
  return { ...base, isRetryable: (err) => !(err instanceof BigQueryJobFailure) && retryable(err) };
}

function safeJobId(prefix: string): string {
  return `${prefix.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 200)}_${randomUUID().replaceAll("-", "")}`;
}

/**
 * Where a job inserted without a location runs: BigQuery places it with the dataset it reads. The
 * lost-answer path needs it, because BigQuery finds a job by id alone only in the US and EU
 * multi-regions; in a region (europe-west2, us-central1) jobs.get without `location` is a 404.
 */
async function datasetLocation(bigquery: BigQuery, dataset: string | undefined): Promise<string | undefined> {
  if (!dataset) return undefined;
  const [meta] = (await bigquery.dataset(dataset).getMetadata()) as [DatasetResource, unknown];
  return meta.location ?? undefined;
}

async function insertJob(bigquery: BigQuery, req: QueryRequest, env: QueryEnv): Promise<Job> {
  const jobId = safeJobId(req.jobPrefix);
  return withRetry(
    async (attempt) => {
      try {
        const [job] = await bigquery.createQueryJob({
          query: req.sql,
          useLegacySql: false,
          ...(req.params ? { params: req.params } : {}),
          jobId,
          // BigQuery stops the job itself too, should this process die before it can cancel.
          jobTimeoutMs: req.timeoutMs,
        });
        return job;
      } catch (err) {
        // The insert may have reached BigQuery before its answer was lost; the retry then meets
        // the job it created (the id is ours, so nothing runs twice).
        if (attempt > 1 && describeFault(err, "bigquery").httpStatus === 409) {
          const location = bigquery.location ?? (await datasetLocation(bigquery, env.ctx.dataset));
          const job = bigquery.job(jobId, location ? { location } : {});
          await job.getMetadata();
          return job;
        }
        throw err;
      }
    },
    callPolicy(env, "jobs.insert"),
  );
}

/** One long poll: true once the job is done. Failures of the job itself come back as BigQueryJobFailure. */
async function pollOnce(job: Job, waitMs: number): Promise<boolean> {
  const answered = new Promise<boolean>((resolve, reject) => {
    job.getQueryResults({ maxResults: 0, timeoutMs: waitMs, autoPaginate: false }, (err, _rows, _next, resp) => {
      // With timeoutMs set, the client reports "not done yet" as an error; the response says which it is.
      if (resp?.jobComplete === false) resolve(false);
      else if (err) reject(err);
      else resolve(true);
    });
  });
  // Should the grace timer win, a late failure of the request must not become an unhandled rejection.
  answered.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const unanswered = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), waitMs + POLL_GRACE_MS);
  });
  try {
    return await Promise.race([answered, unanswered]);
  } catch (err) {
    // getQueryResults answers a failed job with the job's error; the job's status says whether
    // the job failed (re-run it) or only this request did (retry the request).
    const [meta] = (await job.getMetadata()) as [JobMetadata, unknown];
    const errorResult = meta.status?.errorResult;
    if (errorResult) throw new BigQueryJobFailure(job.id ?? "?", errorResult);
    if (meta.status?.state === "DONE") return true;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function cancelQuietly(job: Job): Promise<string> {
  let timer: NodeJS.Timeout | undefined;
  const cancel = job.cancel();
  cancel.catch(() => {});
  try {
    await Promise.race([cancel, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error("no answer")), CANCEL_WAIT_MS)))]);
    return "was cancelled";
  } catch (err) {
    return `could not be cancelled (${describeFault(err, "bigquery").message})`;
  } finally {
    clearTimeout(timer);
  }
}

async function waitForJob(job: Job, req: QueryRequest, env: QueryEnv): Promise<void> {
  const deadline = Date.now() + req.timeoutMs;
  const policy = callPolicy(env, "jobs.getQueryResults");
  for (let remaining = req.timeoutMs; remaining > 0; remaining = deadline - Date.now()) {
    if (await withRetry(() => pollOnce(job, Math.min(remaining, LONG_POLL_MS)), policy)) return;
  }
  const cancelled = await cancelQuietly(job);
  throw new JobError(`${env.ctx.action} did not finish within ${req.timeoutMs} ms; job ${job.id} ${cancelled}`, {
    reason: "query-timeout",
    retryable: true,
    fix: "raise QUERY_TIMEOUT, or look at the job in the BigQuery console (a busy reservation, a table far larger than expected)",
  });
}

/**
 * Runs `req` as a query job and waits for it. A job that finishes with a transient error
 * (backendError, rateLimitExceeded, ...) is run again under a new id; each attempt has the full
 * timeout. Every failure leaves as a JobError naming `env.ctx`.
 */
export async function runQueryJob(bigquery: BigQuery, req: QueryRequest, env: QueryEnv): Promise<FinishedQuery> {
  const retryable = isRetryableGoogleError("bigquery");
  const jobPolicy: RetryPolicy = {
    ...retryPolicy(env.retry, "bigquery", "query job", env.onRetry),
    isRetryable: (err) => err instanceof BigQueryJobFailure && retryable(err),
  };
  try {
    return await withRetry(async () => {
      const job = await insertJob(bigquery, req, env);
      await waitForJob(job, req, env);
      const [meta] = (await withRetry(() => job.getMetadata(), callPolicy(env, "jobs.get"))) as [JobMetadata, unknown];
      if (meta.status?.errorResult) throw new BigQueryJobFailure(job.id ?? "?", meta.status.errorResult);
      const destination = meta.configuration?.query?.destinationTable;
      if (!destination?.projectId || !destination.datasetId || !destination.tableId) {
        throw new JobError(`${env.ctx.action}: job ${job.id} finished without a destination table`, {
          reason: "bigquery-no-destination",
          fix: "the extraction query must be a single SELECT; report this with the job id",
        });
      }
      return { job, destination: { projectId: destination.projectId, datasetId: destination.datasetId, tableId: destination.tableId } };
    }, jobPolicy);
  } catch (err) {
    throw toJobError(err, "bigquery", env.ctx);
  }
}

/** Every row of a finished query, page by page (small results only: INFORMATION_SCHEMA listings). */
export async function fetchAllRows(job: Job, env: QueryEnv): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  const policy = callPolicy(env, "jobs.getQueryResults");
  let pageToken: string | undefined;
  try {
    do {
      const token = pageToken;
      const [page, next] = await withRetry(() => job.getQueryResults({ autoPaginate: false, ...(token ? { pageToken: token } : {}) }), policy);
      for (const row of page) rows.push(row as Record<string, unknown>);
      pageToken = next?.pageToken ?? undefined;
    } while (pageToken);
  } catch (err) {
    throw toJobError(err, "bigquery", env.ctx);
  }
  return rows;
}

/**
 * The bytes `req` would process, from a dry run: jobs.insert with configuration.dryRun, which
 * validates the query as a real one would be (permissions, tables, columns, types) and answers at
 * once with statistics.totalBytesProcessed. BigQuery stores no job for it and bills nothing; a
 * query it would refuse is refused here, as an HTTP error.
 */
export async function dryRunQuery(bigquery: BigQuery, req: Omit<QueryRequest, "timeoutMs">, env: QueryEnv): Promise<number> {
  try {
    const [, response] = await withRetry(
      () =>
        bigquery.createQueryJob({
          query: req.sql,
          useLegacySql: false,
          ...(req.params ? { params: req.params } : {}),
          dryRun: true,
          jobPrefix: `${req.jobPrefix.replace(/[^A-Za-z0-9_-]/g, "_").slice(0, 200)}_`,
        }),
      callPolicy(env, "jobs.insert (dry run)"),
    );
    const stats = (response ?? {}) as { statistics?: { totalBytesProcessed?: string; query?: { totalBytesProcessed?: string } } };
    const bytes = Number(stats.statistics?.query?.totalBytesProcessed ?? stats.statistics?.totalBytesProcessed);
    if (!Number.isFinite(bytes)) {
      throw new JobError(`${env.ctx.action}: the dry run answered without statistics.totalBytesProcessed`, {
        reason: "bigquery-dry-run",
        fix: "report this with the query; BigQuery's dry runs always carry it",
      });
    }
    return bytes;
  } catch (err) {
    throw toJobError(err, "bigquery", env.ctx);
  }
}
