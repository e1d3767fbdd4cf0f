// How much the job does at once, decided here and nowhere else. The extraction pool's memory
// reservations (src/extract/pool.ts) then hold back any table that would not fit MEMORY_BUDGET;
// the numbers below are the upper bounds. Bounded concurrency in the main thread is p-limit's.
import pLimit from "p-limit";

/** Tables in flight for BACKEND=gcp when EXTRACT_CONCURRENCY is unset: a few seconds per read still gives hundreds of tables a minute. */
export const DEFAULT_GCP_TABLES_IN_FLIGHT = 32;
/** Parts uploaded to the bucket at once (each is two resumable uploads). */
export const PART_UPLOADS_AT_ONCE = 4;
/** Staged parts checked for reuse (their metadata read) at once. */
export const REUSE_CHECKS_AT_ONCE = 8;
/** Streams a Storage Read session is asked for, all read at once. */
export const READ_STREAMS_PER_SESSION = 4;
/** Manifests read at once while the index across pairs is rebuilt (28 pairs at most). */
export const MANIFEST_READS_AT_ONCE = 8;
/** BigQuery dry runs (PLAN_ONLY's cost estimate) at once. */
export const DRY_RUNS_AT_ONCE = 16;
/**
 * DuckDB table signatures (table versions) at once, each on its own connection: a signature reads
 * every value in the date range, so two at a time use both cores of the development machine.
 */
export const SIGNATURE_CONNECTIONS = 2;

/** EXTRACT_CONCURRENCY's default: the local backend's work is all CPU (one table a thread); BigQuery's is mostly waiting. */
export function defaultExtractConcurrency(backend: "local" | "gcp", threads: number): number {
  return backend === "gcp" ? Math.max(DEFAULT_GCP_TABLES_IN_FLIGHT, threads) : threads;
}

/** Tables each pool thread works on at once: several on gcp, where a thread mostly waits for BigQuery. */
export function tablesPerThread(backend: "local" | "gcp", extractConcurrency: number, threads: number): number {
  return backend === "gcp" ? Math.max(1, Math.ceil(extractConcurrency / threads)) : 1;
}

/** A limiter: at most `n` of the functions given to it run at once, in call order. */
export function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  const limit = pLimit(n);
  return (fn) => limit(fn);
}

/** `fn` over `items` with at most `n` at once; the results in the items' order. */
export function mapLimited<T, R>(items: readonly T[], n: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const limit = pLimit(n);
  return Promise.all(items.map((item, i) => limit(() => fn(item, i))));
}
