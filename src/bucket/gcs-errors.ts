// What Cloud Storage's errors mean for this job: each failure the library reports (in any of
// its shapes) becomes one JobError naming what failed, the value, and the next step; retryable
// or not. Compose adds its own: too many sources, a storage class mismatch, a source no longer
// at its pinned generation.
import { JobError } from "../errors.ts";

/** The bucket itself is missing (a 404 that is not about an object). */
export function bucketMissing(err: unknown): boolean {
  return /bucket does not exist/i.test((err as { message?: string })?.message ?? "");
}

/** The HTTP status behind a library error, whichever of its several shapes it arrived in. */
export function statusOf(err: unknown): number | undefined {
  const e = err as { code?: unknown; status?: unknown; response?: { status?: unknown }; message?: unknown } | null | undefined;
  if (!e || typeof e !== "object") return undefined;
  if (typeof e.code === "number") return e.code;
  if (typeof e.status === "number") return e.status;
  if (typeof e.response?.status === "number") return e.response.status;
  if (typeof e.code === "string" && /^\d{3}$/.test(e.code)) return Number(e.code);
  // "Retry limit exceeded - status: 503 ..." from the resumable upload once its retries ran out.
  const m = typeof e.message === "string" ? /status: (\d{3})/.exec(e.message) : null;
  return m ? Number(m[1]) : undefined;
}

const NETWORK = /ECONNRESET|ECONNREFUSED|EPIPE|ETIMEDOUT|EAI_AGAIN|socket hang up|fetch failed|other side closed|Retry (total time )?limit exceeded|premature close/i;
const OBJECT_ADMIN = "roles/storage.objectAdmin";

/** One Cloud Storage failure as a JobError naming what failed and what to do. */
export function describeGcsFailure(err: unknown, ctx: { op: string; bucket: string; uri: string }): JobError {
  const status = statusOf(err);
  const detail = String((err as { message?: unknown })?.message ?? err);
  const what = `cannot ${ctx.op} ${ctx.uri}`;
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
    return new JobError(`${what}: permission denied${permission ? ` (missing ${permission})` : ""} on bucket ${ctx.bucket}`, { reason: "gcs-permission-denied", fix: grant, cause: err });
  }
  if (status === 404 && bucketMissing(err)) {
    return new JobError(`${what}: bucket ${ctx.bucket} does not exist`, {
      reason: "gcs-bucket-not-found",
      fix: `create it (gcloud storage buckets create gs://${ctx.bucket} --location=us-central1) or correct the bucket in OUTPUT_URI / CHECKPOINT_URI`,
      cause: err,
    });
  }
  // A compose names a source Cloud Storage does not have at the pinned generation this way.
  const source = status === 404 ? /Object (.+) \(generation: (\d+)\) not found/.exec(detail) : null;
  if (source) {
    return new JobError(`${what}: source gs://${ctx.bucket}/${source[1]} (generation ${source[2]}) no longer exists; it was replaced or deleted after its generation was read`, {
      reason: "source-changed",
      fix: "stage that object again and use its new generation",
      cause: err,
    });
  }
  if (status === 404) return new JobError(`${what}: no such object`, { reason: "object-not-found", fix: "check the object name; it may have been deleted or replaced meanwhile", cause: err });
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
  if (status === 408 || status === 429 || (status !== undefined && status >= 500) || NETWORK.test(detail) || NETWORK.test(String((err as { code?: string | number } | undefined)?.code ?? ""))) {
    return new JobError(`${what}: Cloud Storage is unavailable or throttling (${status ?? "network"}: ${detail}), after the client's own retries`, {
      reason: "gcs-unavailable",
      retryable: true,
      fix: "run again later; check https://status.cloud.google.com if it persists",
      cause: err,
    });
  }
  return new JobError(`${what}: ${status ? `HTTP ${status}: ` : ""}${detail}`, { reason: "gcs-error", cause: err });
}
