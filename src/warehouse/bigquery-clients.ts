// The two Google clients the BigQuery adapter drives, built once per thread, and the one retry
// policy applied to everything they send.
//
// Retries, and why they do not multiply:
// - @google-cloud/bigquery (through @google-cloud/common's makeRequest and retry-request) would
//   retry every REST call itself: 3 times on HTTP 408/429/500/502/503/504 or reason
//   rateLimitExceeded/userRateLimitExceeded, 2-3 s then 4-5 s then 8-9 s. It cannot retry a
//   query job that *finished* with backendError, and its delays cannot be tuned below a second.
//   So it is built with `retryOptions.autoRetry: false` and every call goes through `withRetry`
//   here: one policy, one place to read it.
// - google-gax (under BigQueryReadClient) retries CreateReadSession on UNAVAILABLE and
//   DEADLINE_EXCEEDED for up to 600 s, and ReadRows (through retry-request) on *any* error that
//   arrives before the first response, twice. Both are switched off per call (`retry: null`,
//   `retryRequestOptions: { retries: 0, noResponseRetries: 0 }`); the adapter retries
//   CreateReadSession and resumes ReadRows from its row offset itself.
// - The worker pool retries a table whose JobError is retryable, but never one a request's retries
//   were used up on (src/retry.ts marks it spent): each fault is retried by one layer only.
import { BigQuery } from "@google-cloud/bigquery";
import type { BigQueryReadClient } from "@google-cloud/bigquery-storage";
import { authClientForEndpoint } from "../gcp/auth.ts";
import { isRetryableGoogleError, type GoogleApi } from "../gcp/errors.ts";
import type { RetryPolicy } from "../retry.ts";
import type { GcpRetrySettings, GcpTaskSettings } from "./port.ts";

export const DEFAULT_GCP_RETRY: Readonly<GcpRetrySettings> = Object.freeze({ attempts: 6, baseDelayMs: 1_000, maxDelayMs: 32_000 });
/** A ReadRows stream that sends nothing for this long is treated as dropped and resumed. */
export const DEFAULT_READ_IDLE_TIMEOUT_MS = 120_000;

export interface RetryNotice {
  api: GoogleApi;
  what: string;
  attempt: number;
  delayMs: number;
  error: unknown;
}

export function retryPolicy(settings: GcpRetrySettings | undefined, api: GoogleApi, what: string, onRetry?: (notice: RetryNotice) => void): RetryPolicy {
  const s = settings ?? DEFAULT_GCP_RETRY;
  return {
    attempts: s.attempts,
    baseDelayMs: s.baseDelayMs,
    maxDelayMs: s.maxDelayMs,
    isRetryable: isRetryableGoogleError(api),
    ...(onRetry ? { onRetry: (info: { attempt: number; delayMs: number; error: unknown }) => onRetry({ api, what, ...info }) } : {}),
  };
}

export interface BigQueryClientOptions {
  project: string;
  location?: string | undefined;
  apiEndpoint?: string | undefined;
  /** Defaults to a placeholder-token client for loopback http endpoints, else ADC. */
  authClient?: ReturnType<typeof authClientForEndpoint>;
}

export function createBigQueryClient(opts: BigQueryClientOptions): BigQuery {
  const authClient = opts.authClient ?? authClientForEndpoint(opts.apiEndpoint);
  return new BigQuery({
    projectId: opts.project,
    ...(opts.location ? { location: opts.location } : {}),
    ...(opts.apiEndpoint ? { apiEndpoint: opts.apiEndpoint } : {}),
    ...(authClient ? { authClient } : {}),
    retryOptions: { autoRetry: false },
  });
}

/**
 * `endpoint` is an http(s) origin: http:// means a plaintext stand-in (no TLS, placeholder
 * token), https:// a real service on a non-default address; undefined means Google's endpoint.
 */
export async function createReadClient(project: string, endpoint: string | undefined): Promise<BigQueryReadClient> {
  // Loaded by the extraction workers only: the main thread never reads a table.
  const { BigQueryReadClient } = await import("@google-cloud/bigquery-storage");
  if (!endpoint) return new BigQueryReadClient({ projectId: project });
  const url = new URL(endpoint);
  const plaintext = url.protocol === "http:";
  const port = Number(url.port || (plaintext ? 80 : 443));
  const servicePath = url.hostname.replace(/^\[|\]$/g, "");
  const authClient = authClientForEndpoint(endpoint);
  // google-gax only skips TLS when handed insecure channel credentials. @grpc/grpc-js is loaded
  // on this path only (production never takes it); it is the same module instance gax uses.
  const sslCreds = plaintext ? (await import("@grpc/grpc-js")).credentials.createInsecure() : undefined;
  return new BigQueryReadClient({
    projectId: project,
    servicePath,
    port,
    ...(sslCreds ? { sslCreds } : {}),
    // gax's GoogleAuth asks the auth client for its universe domain even over plaintext; without
    // one it would probe for Application Default Credentials and the metadata server. gax is
    // typed against google-auth-library 10 and auth.ts builds a v11 client: only getClient,
    // universeDomain and getRequestHeaders are used, which both versions have.
    ...(authClient ? { authClient: authClient as unknown as ReadClientOptions["authClient"] } : {}),
  });
}

type ReadClientOptions = NonNullable<ConstructorParameters<typeof BigQueryReadClient>[0]>;

export interface GcpClients {
  bigquery: BigQuery;
  read: BigQueryReadClient;
}

/**
 * One BigQuery client and one BigQueryReadClient per worker thread and endpoint, kept across
 * tasks: a read client holds a gRPC channel, and building clients per table would open one
 * connection per table.
 */
const bigqueryClients = new Map<string, BigQuery>();
const readClients = new Map<string, Promise<BigQueryReadClient>>();

export async function workerClients(gcp: GcpTaskSettings): Promise<GcpClients> {
  const bqKey = JSON.stringify([gcp.project, gcp.location ?? null, gcp.bigqueryEndpoint ?? null]);
  let bigquery = bigqueryClients.get(bqKey);
  if (!bigquery) {
    bigquery = createBigQueryClient({ project: gcp.project, location: gcp.location, apiEndpoint: gcp.bigqueryEndpoint });
    bigqueryClients.set(bqKey, bigquery);
  }
  const readKey = JSON.stringify([gcp.project, gcp.storageReadEndpoint ?? null]);
  let read = readClients.get(readKey);
  if (!read) {
    read = createReadClient(gcp.project, gcp.storageReadEndpoint);
    read.catch(() => readClients.delete(readKey));
    readClients.set(readKey, read);
  }
  return { bigquery, read: await read };
}

/** Closes this thread's read clients (their gRPC channels); tests and the pool's teardown call it. */
export async function closeWorkerClients(): Promise<void> {
  const reads = [...readClients.values()];
  readClients.clear();
  bigqueryClients.clear();
  await Promise.allSettled(reads.map(async (r) => (await r).close()));
}
