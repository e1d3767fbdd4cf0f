// Reading a table through the Storage Read API with the low-level BigQueryReadClient: one read
// session in Arrow format (on a source table with selected fields and a row restriction, or on a
// query job's result table), then ReadRows on every stream at once with our own offset/resume
// loop. The
// library's high-level reader crashes the process when a stream drops (REFERENCE.md); here a
// dropped stream (UNAVAILABLE, INTERNAL/RST_STREAM, a stall) is reopened at the row offset
// already received, so no row is read twice or lost.
import { setTimeout as sleep } from "node:timers/promises";
import type { BigQueryReadClient, protos } from "@google-cloud/bigquery-storage";
import { JobError } from "../errors.ts";
import { describeFault, isRetryableFault, toJobError, type FailureContext } from "../gcp/errors.ts";
import { backoffDelayMs, markRetriesSpent, withRetry } from "../retry.ts";
import { DEFAULT_GCP_RETRY, DEFAULT_READ_IDLE_TIMEOUT_MS, retryPolicy, type RetryNotice } from "./bigquery-clients.ts";
import type { TableRef } from "./bigquery-query.ts";
import type { GcpRetrySettings } from "./port.ts";

const CREATE_SESSION_TIMEOUT_MS = 120_000;

/** Receives the table as Arrow IPC messages: the schema once, then record batches in order. */
export interface ReadSink {
  onSchema(serializedSchema: Uint8Array): void | Promise<void>;
  /** Takes one batch and the row count its response declares (0 = not declared); returns the rows it held. */
  onBatch(serializedBatch: Uint8Array, declaredRows: number): Promise<number>;
}

export interface ReadEnv {
  /** Project billed for the read session. */
  project: string;
  retry?: GcpRetrySettings | undefined;
  idleTimeoutMs?: number | undefined;
  ctx: FailureContext;
  onRetry?: ((notice: RetryNotice) => void) | undefined;
}

/** What the session reads: a projection and a filter on the table itself, and how many streams to ask for. */
export interface ReadOptions {
  /** Columns to read (the table's names); the session sends them in the table's order, not this one. */
  selectedFields?: readonly string[] | undefined;
  /** A filter in the Storage Read API's subset of SQL: comparisons of a column with a constant, joined by AND. */
  rowRestriction?: string | undefined;
  /** Upper bound on the streams; the service may give fewer. Rows of several streams come in no order. */
  maxStreamCount: number;
}

export interface ReadStats {
  rows: number;
  streams: number;
  /** ReadRows calls reopened after a drop. */
  resumes: number;
  /** The session's own estimate of the bytes it scans (what the read is billed on). */
  estimatedBytesScanned: number;
}

/** A stream that went quiet: handled like a dropped connection. */
class StreamStalled extends Error {
  readonly code = 14;
  readonly details = "stalled";
}

/** Marks a failure of the sink (a check, a write), which must never be retried as a stream drop. */
class SinkFailure extends Error {}

/** protobufjs types `bytes` fields as string too (base64, for JSON); gRPC delivers Buffers. */
function asBytes(value: Uint8Array | string | null | undefined): Uint8Array | undefined {
  if (value === null || value === undefined) return undefined;
  return typeof value === "string" ? Buffer.from(value, "base64") : value;
}

export function tablePath(t: TableRef): string {
  return `projects/${t.projectId}/datasets/${t.datasetId}/tables/${t.tableId}`;
}

/**
 * Creates the read session a read of `table` would, and reads none of its streams: the check that
 * the caller may create read sessions (bigquery.readsessions.create) and read the table, before a
 * run depends on it. Creating a session reads no row and is not billed (the Storage Read API bills
 * the bytes ReadRows scans); it expires by itself (6 hours). Returns the session's own estimate.
 */
export async function probeReadSession(
  client: BigQueryReadClient,
  table: TableRef,
  env: ReadEnv,
  options: ReadOptions,
): Promise<{ estimatedBytesScanned: number; streams: number }> {
  try {
    const [session] = await withRetry(
      () =>
        client.createReadSession(
          {
            parent: `projects/${env.project}`,
            readSession: {
              table: tablePath(table),
              dataFormat: "ARROW",
              readOptions: {
                ...(options.selectedFields ? { selectedFields: [...options.selectedFields] } : {}),
                ...(options.rowRestriction ? { rowRestriction: options.rowRestriction } : {}),
              },
            },
            maxStreamCount: options.maxStreamCount,
          },
          { retry: null, timeout: CREATE_SESSION_TIMEOUT_MS },
        ),
      retryPolicy(env.retry, "storage", "CreateReadSession", env.onRetry),
    );
    return { estimatedBytesScanned: Number(session.estimatedTotalBytesScanned ?? 0), streams: session.streams?.length ?? 0 };
  } catch (err) {
    throw toJobError(err, "storage", env.ctx);
  }
}

/**
 * Reads `table` (the selected fields of the rows the restriction keeps, or everything) into `sink`.
 * With one stream the rows keep the table's order (a query result's ORDER BY); with several, the
 * streams are read at once and their batches interleave. Every failure leaves as a JobError naming `env.ctx`.
 */
export async function readTableArrow(
  client: BigQueryReadClient,
  table: TableRef,
  sink: ReadSink,
  env: ReadEnv,
  options: ReadOptions = { maxStreamCount: 1 },
): Promise<ReadStats> {
  try {
    const readOptions = {
      ...(options.selectedFields ? { selectedFields: [...options.selectedFields] } : {}),
      ...(options.rowRestriction ? { rowRestriction: options.rowRestriction } : {}),
    };
    const [session] = await withRetry(
      () =>
        client.createReadSession(
          {
            parent: `projects/${env.project}`,
            readSession: { table: tablePath(table), dataFormat: "ARROW", ...(Object.keys(readOptions).length > 0 ? { readOptions } : {}) },
            maxStreamCount: options.maxStreamCount,
          },
          { retry: null, timeout: CREATE_SESSION_TIMEOUT_MS },
        ),
      retryPolicy(env.retry, "storage", "CreateReadSession", env.onRetry),
    );
    const schema = asBytes(session.arrowSchema?.serializedSchema);
    if (!schema || schema.length === 0) {
      throw new JobError(`${env.ctx.action}: the read session of ${tablePath(table)} has no Arrow schema`, {
        reason: "bigquery-unexpected-schema",
        retryable: true,
      });
    }
    await sink.onSchema(schema);
    // An empty result has no streams at all. A failing stream stops the others at their next batch.
    const names = (session.streams ?? []).flatMap((s) => (s.name ? [s.name] : []));
    const stop = { failed: false };
    const reads = await Promise.all(
      names.map((name) =>
        readStream(client, name, sink, env, stop).catch((err: unknown) => {
          stop.failed = true;
          throw err;
        }),
      ),
    );
    return {
      rows: reads.reduce((n, r) => n + r.rows, 0),
      streams: names.length,
      resumes: reads.reduce((n, r) => n + r.resumes, 0),
      estimatedBytesScanned: Number(session.estimatedTotalBytesScanned ?? 0),
    };
  } catch (err) {
    throw toJobError(err instanceof SinkFailure ? err.cause : err, "storage", env.ctx);
  }
}

/** Another stream of the session failed: this one ends without reading further. */
class SessionFailed extends Error {}

async function readStream(
  client: BigQueryReadClient,
  name: string,
  sink: ReadSink,
  env: ReadEnv,
  stop: { failed: boolean },
): Promise<{ rows: number; resumes: number }> {
  const retry = env.retry ?? DEFAULT_GCP_RETRY;
  const state = { offset: 0 };
  let resumes = 0;
  let failuresInARow = 0;
  for (;;) {
    const before = state.offset;
    try {
      await readFrom(client, name, state, sink, env.idleTimeoutMs ?? DEFAULT_READ_IDLE_TIMEOUT_MS, stop);
      return { rows: state.offset, resumes };
    } catch (err) {
      if (err instanceof SinkFailure || err instanceof SessionFailed) throw err;
      // Only failures without progress count against the budget: a long read may drop many times.
      failuresInARow = state.offset > before ? 1 : failuresInARow + 1;
      if (!isRetryableFault(describeFault(err, "storage"))) throw err;
      if (failuresInARow >= retry.attempts) throw markRetriesSpent(err);
      const delayMs = backoffDelayMs(failuresInARow, retry.baseDelayMs, retry.maxDelayMs);
      env.onRetry?.({ api: "storage", what: `ReadRows ${name} from offset ${state.offset}`, attempt: failuresInARow, delayMs, error: err });
      await sleep(delayMs);
      if (stop.failed) throw new SessionFailed(`another stream of the session of ${name} failed`);
      resumes++;
    }
  }
}

/** One ReadRows call from `state.offset`; advances the offset batch by batch. */
async function readFrom(
  client: BigQueryReadClient,
  name: string,
  state: { offset: number },
  sink: ReadSink,
  idleTimeoutMs: number,
  stop: { failed: boolean },
): Promise<void> {
  // retry-request would otherwise re-send this call twice on any error before the first
  // message, at the same offset, after 2-5 s; the loop above does that with the real offset.
  const call = client.readRows({ readStream: name, offset: state.offset }, { retryRequestOptions: { retries: 0, noResponseRetries: 0 } });
  let idle: NodeJS.Timeout | undefined;
  const arm = () => {
    idle = setTimeout(() => {
      // Destroyed first, so the loop sees the stall (retryable) rather than the CANCELLED status
      // the cancel produces.
      call.destroy(new StreamStalled(`ReadRows ${name} sent nothing for ${idleTimeoutMs} ms`));
      call.cancel();
    }, idleTimeoutMs);
  };
  let ended = false;
  arm();
  try {
    for await (const response of call as AsyncIterable<protos.google.cloud.bigquery.storage.v1.IReadRowsResponse>) {
      clearTimeout(idle);
      if (stop.failed) throw new SessionFailed(`another stream of the session of ${name} failed`);
      const batch = asBytes(response.arrowRecordBatch?.serializedRecordBatch);
      // proto3 decodes an absent row_count as "0"; the batch itself then says how many rows it holds.
      const declared = Number(response.rowCount || 0) || Number(response.arrowRecordBatch?.rowCount || 0);
      if (batch && batch.length > 0) {
        try {
          state.offset += await sink.onBatch(batch, declared);
        } catch (err) {
          throw new SinkFailure("sink failed", { cause: err });
        }
      }
      arm();
    }
    ended = true;
  } finally {
    clearTimeout(idle);
    if (!ended) call.cancel();
  }
}
