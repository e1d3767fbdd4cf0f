// Google API failures (BigQuery REST, the Storage Read API over gRPC, Cloud Storage), turned into
// JobErrors at the adapter edge: which ones are worth retrying, and for the rest what to do next:
// the missing role, the dataset, table, bucket or object that is not there. The one place that
// reads the client libraries' error shapes: an ApiError with an HTTP status (in `code`, `status`
// or `response.status`, or only in the message once a resumable upload gave up) and
// `errors[].reason`, a gRPC ServiceError with a numeric status code, and a plain network error
// with a string code. A finished query job reports its failure as `status.errorResult`, which
// `BigQueryJobFailure` wraps in the same shape.
import { JobError } from "../errors.ts";
import { markRetriesSpent, retriesSpent } from "../retry.ts";

export type GoogleApi = "bigquery" | "storage" | "gcs";

/** What a failure says, whatever shape it arrived in. */
export interface GoogleApiFault {
  api: GoogleApi;
  httpStatus: number | undefined;
  grpcCode: number | undefined;
  /** BigQuery's reason (`errors[].reason` or `errorResult.reason`), e.g. rateLimitExceeded. */
  reason: string | undefined;
  /** Node's code for a request that got no answer, e.g. ECONNRESET. */
  networkCode: string | undefined;
  message: string;
}

/** Where the failure happened, for the message and the fix. */
export interface FailureContext {
  /** What was being done, e.g. "querying bqx-ml.features.agg_eurusd". */
  action: string;
  project: string;
  location?: string | undefined;
  dataset?: string | undefined;
  table?: string | undefined;
}

/** gRPC status codes (grpc/status.h); names for messages. */
export const GRPC_STATUS: Readonly<Record<number, string>> = {
  1: "CANCELLED",
  2: "UNKNOWN",
  3: "INVALID_ARGUMENT",
  4: "DEADLINE_EXCEEDED",
  5: "NOT_FOUND",
  6: "ALREADY_EXISTS",
  7: "PERMISSION_DENIED",
  8: "RESOURCE_EXHAUSTED",
  9: "FAILED_PRECONDITION",
  10: "ABORTED",
  11: "OUT_OF_RANGE",
  12: "UNIMPLEMENTED",
  13: "INTERNAL",
  14: "UNAVAILABLE",
  15: "DATA_LOSS",
  16: "UNAUTHENTICATED",
};
const GRPC_UNAVAILABLE = 14;

/** REFERENCE.md: retry these; never retry accessDenied, notFound, invalidQuery, invalid, resourcesExceeded. */
const RETRYABLE_REASONS = new Set(["rateLimitExceeded", "userRateLimitExceeded", "jobRateLimitExceeded", "backendError", "internalError"]);
const FINAL_REASONS = new Set([
  "accessDenied",
  "notFound",
  "invalidQuery",
  "invalid",
  "resourcesExceeded",
  "quotaExceeded",
  "duplicate",
  "responseTooLarge",
  "billingNotEnabled",
  "stopped",
  "timeout",
]);
/** UNAVAILABLE and INTERNAL are how a dropped connection or an RST_STREAM surface in grpc-js. */
const RETRYABLE_GRPC = new Set([4, 8, 10, 13, GRPC_UNAVAILABLE]);
const RETRYABLE_NETWORK = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ETIMEDOUT",
  "EPIPE",
  "EAI_AGAIN",
  "ECONNABORTED",
  "ERR_STREAM_PREMATURE_CLOSE",
  "UND_ERR_SOCKET",
]);

/** A query job that finished with `status.errorResult`: thrown like an API error so one mapping serves both. */
export class BigQueryJobFailure extends Error {
  readonly reason: string | undefined;
  readonly jobId: string;

  constructor(jobId: string, errorResult: { reason?: string | null; message?: string | null }) {
    super(`job ${jobId} failed: ${errorResult.message ?? "no message"}`);
    this.name = "BigQueryJobFailure";
    this.reason = errorResult.reason ?? undefined;
    this.jobId = jobId;
  }
}

function field(err: unknown, name: string): unknown {
  return typeof err === "object" && err !== null ? (err as Record<string, unknown>)[name] : undefined;
}

/** The HTTP status behind a library error, whichever of its several shapes it arrived in. */
export function httpStatusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown }; message?: unknown } | null | undefined;
  if (!e || typeof e !== "object") return undefined;
  if (typeof e.code === "number" && e.code >= 100) return e.code;
  if (typeof e.status === "number") return e.status;
  if (typeof e.response?.status === "number") return e.response.status;
  if (typeof e.code === "string" && /^\d{3}$/.test(e.code)) return Number(e.code);
  // "Retry limit exceeded - status: 503 ..." from the resumable upload once its retries ran out.
  const m = typeof e.message === "string" ? /status: (\d{3})/.exec(e.message) : null;
  return m ? Number(m[1]) : undefined;
}

export function describeFault(err: unknown, api: GoogleApi): GoogleApiFault {
  const code = field(err, "code");
  const errors = field(err, "errors");
  const firstReason = Array.isArray(errors)
    ? (errors.find((e) => typeof field(e, "reason") === "string") as { reason?: string } | undefined)?.reason
    : undefined;
  const reason = err instanceof BigQueryJobFailure ? err.reason : firstReason;
  // ApiError carries an HTTP status; a gRPC error a status code 0-16 (and `details`/`metadata`).
  const isGrpc = typeof code === "number" && code >= 0 && code <= 16 && (field(err, "details") !== undefined || field(err, "metadata") !== undefined);
  const message = err instanceof Error ? err.message : typeof err === "string" ? err : JSON.stringify(err);
  return {
    api,
    httpStatus: isGrpc ? undefined : httpStatusOf(err),
    grpcCode: isGrpc ? code : undefined,
    reason,
    networkCode: typeof code === "string" && !/^\d{3}$/.test(code) ? code : undefined,
    message: message.split("\n")[0] ?? message,
  };
}

export function isRetryableFault(f: GoogleApiFault): boolean {
  if (f.reason !== undefined && FINAL_REASONS.has(f.reason)) return false;
  if (f.reason !== undefined && RETRYABLE_REASONS.has(f.reason)) return true;
  if (f.httpStatus !== undefined) return f.httpStatus === 408 || f.httpStatus === 429 || f.httpStatus >= 500;
  if (f.grpcCode !== undefined) return RETRYABLE_GRPC.has(f.grpcCode);
  if (f.networkCode !== undefined) return RETRYABLE_NETWORK.has(f.networkCode);
  return false;
}

/** For `withRetry`: transient Google API errors only; a JobError says for itself. */
export function isRetryableGoogleError(api: GoogleApi): (err: unknown) => boolean {
  return (err) => (err instanceof JobError ? err.retryable : isRetryableFault(describeFault(err, api)));
}

function statusLabel(f: GoogleApiFault): string {
  const parts = [
    f.httpStatus !== undefined ? `HTTP ${f.httpStatus}` : undefined,
    f.grpcCode !== undefined ? (GRPC_STATUS[f.grpcCode] ?? `gRPC ${f.grpcCode}`) : undefined,
    f.reason,
    f.networkCode,
  ].filter((p): p is string => p !== undefined);
  return parts.length > 0 ? parts.join(" ") : "error";
}

function roleFix(f: GoogleApiFault, ctx: FailureContext): string {
  const text = f.message.toLowerCase();
  const who = "the job's service account";
  if (text.includes("jobs.create")) return `grant roles/bigquery.jobUser on project ${ctx.project} to ${who} (it runs the query jobs)`;
  const readsTable = text.includes("tables.getdata");
  if (text.includes("readsession") || (f.api === "storage" && !readsTable)) {
    return `grant roles/bigquery.readSessionUser on project ${ctx.project} to ${who} (Storage Read API), and roles/bigquery.dataViewer on the dataset it reads`;
  }
  const dataset = ctx.dataset ? `dataset ${ctx.project}:${ctx.dataset}` : "the dataset";
  return (
    `grant roles/bigquery.dataViewer on ${dataset} to ${who}; the job also needs roles/bigquery.jobUser ` +
    `(query jobs) and roles/bigquery.readSessionUser (Storage Read API) on project ${ctx.project}`
  );
}

function notFoundFix(ctx: FailureContext): string {
  const where = `project ${ctx.project}${ctx.location ? ` in location ${ctx.location}` : ""}`;
  const what = ctx.table && ctx.dataset ? `table ${ctx.dataset}.${ctx.table}` : ctx.dataset ? `dataset ${ctx.dataset}` : "the dataset";
  return (
    `check that ${what} exists in ${where} (GCP_PROJECT, BQ_LOCATION); ` +
    "the target table lives in a different dataset than the features (TARGETS_DATASET vs FEATURES_DATASET)"
  );
}

/**
 * The JobError for a failed BigQuery or Storage Read call; JobErrors pass through unchanged. An
 * error a retry layer gave up on stays spent (src/retry.ts), so no outer layer retries it again.
 */
export function toJobError(err: unknown, api: GoogleApi, ctx: FailureContext): JobError {
  if (err instanceof JobError) return err;
  const job = classify(err, api, ctx);
  return retriesSpent(err) ? markRetriesSpent(job) : job;
}

function classify(err: unknown, api: GoogleApi, ctx: FailureContext): JobError {
  const f = describeFault(err, api);
  const head = `${ctx.action} failed (${statusLabel(f)}): ${f.message}`;
  const opts = { cause: err };
  // Before the status checks: BigQuery sends some rate limits as HTTP 403 rateLimitExceeded.
  if (f.reason !== undefined && RETRYABLE_REASONS.has(f.reason)) {
    return new JobError(head, {
      ...opts,
      reason: "bigquery-transient",
      retryable: true,
      fix: "a transient BigQuery error that outlasted the retries; run the job again (the parts already staged are kept)",
    });
  }
  if (f.reason === "accessDenied" || f.httpStatus === 403 || f.grpcCode === 7) {
    return new JobError(head, { ...opts, reason: "bigquery-access-denied", fix: roleFix(f, ctx) });
  }
  if (f.httpStatus === 401 || f.grpcCode === 16) {
    return new JobError(head, {
      ...opts,
      reason: "bigquery-unauthenticated",
      fix: "run as a service account (on Cloud Run, the job's service account) or `gcloud auth application-default login` locally",
    });
  }
  if (f.reason === "notFound" || f.httpStatus === 404 || f.grpcCode === 5) {
    return new JobError(head, { ...opts, reason: "bigquery-not-found", fix: notFoundFix(ctx) });
  }
  if (f.reason === "timeout") {
    // The job's own jobTimeoutMs (set to the query timeout) fired before the client's deadline did.
    return new JobError(head, { ...opts, reason: "query-timeout", retryable: true, fix: "raise QUERY_TIMEOUT, or look at the job in the BigQuery console" });
  }
  if (f.reason === "resourcesExceeded") {
    return new JobError(head, {
      ...opts,
      reason: "bigquery-resources-exceeded",
      fix: "lower ROW_LIMIT or narrow DATE_FROM/DATE_TO so the query needs less memory",
    });
  }
  if (f.reason === "quotaExceeded") {
    return new JobError(head, { ...opts, reason: "bigquery-quota", fix: `lower EXTRACT_CONCURRENCY, or raise the BigQuery quota of project ${ctx.project}` });
  }
  if (f.reason === "invalidQuery" || f.reason === "invalid" || f.httpStatus === 400 || f.grpcCode === 3) {
    return new JobError(head, {
      ...opts,
      reason: "bigquery-invalid-query",
      fix: "the query is built from INFORMATION_SCHEMA; if the table changed since discovery, run the job again, otherwise report the message above",
    });
  }
  if (isRetryableFault(f)) {
    return new JobError(head, {
      ...opts,
      reason: "bigquery-transient",
      retryable: true,
      fix: "a transient BigQuery error that outlasted the retries; run the job again (the parts already staged are kept)",
    });
  }
  // An unknown failure without a definite client-side status: trying again is harmless.
  const definite = f.httpStatus !== undefined || f.grpcCode !== undefined || f.reason !== undefined;
  return new JobError(head, { ...opts, reason: "bigquery-failed", retryable: !definite });
}

// ---- Cloud Storage: what its failures mean for the bucket adapter (compose adds its own: too
// many sources, a storage class mismatch, a source no longer at its pinned generation) ----

/** The bucket itself is missing (a 404 that is not about an object). */
export function bucketMissing(err: unknown): boolean {
  return /bucket does not exist/i.test((err as { message?: string })?.message ?? "");
}

const NETWORK =
  /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN|socket hang up|fetch failed|other side closed|Retry (total time )?limit exceeded|premature close/i;
const OBJECT_ADMIN = "roles/storage.objectAdmin";

/** One Cloud Storage failure as a JobError naming what failed and what to do. */
export function describeGcsFailure(err: unknown, ctx: { op: string; bucket: string; uri: string }): JobError {
  const f: GcsFault = {
    err,
    ctx,
    status: httpStatusOf(err),
    detail: String((err as { message?: unknown })?.message ?? err),
    what: `cannot ${ctx.op} ${ctx.uri}`,
  };
  return (
    gcsAccessFailure(f) ??
    gcsObjectFailure(f) ??
    gcsTransientFailure(f) ??
    new JobError(`${f.what}: ${f.status ? `HTTP ${f.status}: ` : ""}${f.detail}`, { reason: "gcs-error", cause: err })
  );
}

/** One Cloud Storage failure, read once: the library's error, where it happened, its status and message. */
interface GcsFault {
  err: unknown;
  ctx: { op: string; bucket: string; uri: string };
  status: number | undefined;
  detail: string;
  /** "cannot <op> <uri>": how every message starts. */
  what: string;
}

/** Credentials, permissions, a missing bucket. */
function gcsAccessFailure({ err, ctx, status, detail, what }: GcsFault): JobError | undefined {
  const grant = `grant ${OBJECT_ADMIN} on gs://${ctx.bucket} to the job's service account (gcloud storage buckets add-iam-policy-binding gs://${ctx.bucket} --member=serviceAccount:<job service account> --role=${OBJECT_ADMIN}); objectCreator + objectViewer is not enough, replacing and cleaning up objects needs storage.objects.delete`;
  if (status === 401) {
    return new JobError(`${what}: Cloud Storage did not accept the credentials (401: ${detail})`, {
      reason: "gcs-unauthenticated",
      fix: "run with a service account (Cloud Run: the job's --service-account; locally: gcloud auth application-default login)",
      cause: err,
    });
  }
  if (status === 403) {
    const permission = /Permission '([\w.]+)'/.exec(detail)?.[1] ?? /does not have ([\w.]+) access/.exec(detail)?.[1];
    return new JobError(`${what}: permission denied${permission ? ` (missing ${permission})` : ""} on bucket ${ctx.bucket}`, {
      reason: "gcs-permission-denied",
      fix: grant,
      cause: err,
    });
  }
  if (status === 404 && bucketMissing(err)) {
    return new JobError(`${what}: bucket ${ctx.bucket} does not exist`, {
      reason: "gcs-bucket-not-found",
      fix: `create it (gcloud storage buckets create gs://${ctx.bucket} --location=us-central1) or correct the bucket in OUTPUT_URI`,
      cause: err,
    });
  }
  return undefined;
}

/** What an object (or a compose's sources) was not: there, at that generation, in range, in the storage class, whole. */
function gcsObjectFailure({ err, ctx, status, detail, what }: GcsFault): JobError | undefined {
  // A compose names a source Cloud Storage does not have at the pinned generation this way.
  const source = status === 404 ? /Object (.+) \(generation: (\d+)\) not found/.exec(detail) : null;
  if (source) {
    return new JobError(
      `${what}: source gs://${ctx.bucket}/${source[1]} (generation ${source[2]}) no longer exists; it was replaced or deleted after its generation was read`,
      {
        reason: "source-changed",
        fix: "stage that object again and use its new generation",
        cause: err,
      },
    );
  }
  if (status === 404)
    return new JobError(`${what}: no such object`, {
      reason: "object-not-found",
      fix: "check the object name; it may have been deleted or replaced meanwhile",
      cause: err,
    });
  if (status === 412) {
    return new JobError(`${what}: another writer changed the object meanwhile (generation precondition failed)`, {
      reason: "gcs-precondition-failed",
      fix: "make sure only one execution writes this pair's objects at a time, then run again",
      cause: err,
    });
  }
  if (status === 416) return new JobError(`${what}: the byte range starts past the end of the object`, { reason: "range-out-of-bounds", cause: err });
  const tooMany = status === 400 ? /number of source components provided \((\d+)\) exceeds the maximum \((\d+)\)/.exec(detail) : null;
  if (tooMany) {
    return new JobError(`${what}: Cloud Storage composes at most ${tooMany[2]} sources at once (got ${tooMany[1]})`, {
      reason: "too-many-compose-sources",
      fix: `compose in a tree: groups of at most ${tooMany[2]} (the bucket's maxComposeSources), then the groups' results`,
      cause: err,
    });
  }
  if (status === 400 && /Cannot compose object with destination storage class/.test(detail)) {
    return new JobError(`${what}: the sources' storage class differs from the destination's (${detail})`, {
      reason: "compose-storage-class-mismatch",
      fix: `stage every part in the bucket's default storage class (gcloud storage buckets describe gs://${ctx.bucket} --format='value(default_storage_class)'), or rewrite the odd ones to it`,
      cause: err,
    });
  }
  if (status === 400 && /(CRC32C|MD5).*doesn't match/i.test(detail)) {
    return new JobError(`${what}: Cloud Storage rejected the bytes it received (${detail}); any earlier object is unchanged`, {
      reason: "checksum-mismatch",
      retryable: true,
      fix: "run again; if it repeats, the local file changed after its checksum was computed",
      cause: err,
    });
  }
  return undefined;
}

/** 408, 429, 5xx and dropped connections, once the library's own retries are spent. */
function gcsTransientFailure({ err, status, detail, what }: GcsFault): JobError | undefined {
  if (
    status === 408 ||
    status === 429 ||
    (status !== undefined && status >= 500) ||
    NETWORK.test(detail) ||
    NETWORK.test(String((err as { code?: string | number } | undefined)?.code ?? ""))
  ) {
    return new JobError(`${what}: Cloud Storage is unavailable or throttling (${status ?? "network"}: ${detail}), after the client's own retries`, {
      reason: "gcs-unavailable",
      retryable: true,
      fix: "run again later; check https://status.cloud.google.com if it persists",
      cause: err,
    });
  }
  return undefined;
}
