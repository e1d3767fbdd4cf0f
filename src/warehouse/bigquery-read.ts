// Reading a table through the Storage Read API with the low-level BigQueryReadClient: one read
// session in Arrow format, then ReadRows per stream with our own offset/resume loop. The
// library's high-level reader crashes the process when a stream drops (REFERENCE.md); here a
// dropped stream (UNAVAILABLE, INTERNAL/RST_STREAM, a stall) is reopened at the row offset
// already received, so no row is read twice or lost.
import { setTimeout as sleep } from "node:timers/promises";
import type { BigQueryReadClient } from "@google-cloud/bigquery-storage";
import { JobError } from "../errors.ts";
import { describeFault, isRetryableFault, toJobError, type FailureContext } from "../gcp/errors.ts";
import { backoffDelayMs, withRetry } from "../gcp/retry.ts";
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

export interface ReadStats {
  rows: number;
  streams: number;
  /** ReadRows calls reopened after a drop. */
  resumes: number;
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

/** Reads `table` in full into `sink`. Every failure leaves as a JobError naming `env.ctx`. */
export async function readTableArrow(client: BigQueryReadClient, table: TableRef, sink: ReadSink, env: ReadEnv): Promise<ReadStats> {
  try {
    const [session] = await withRetry(
      () =>
        client.createReadSession(
          {
            parent: `projects/${env.project}`,
            readSession: { table: tablePath(table), dataFormat: "ARROW" },
            // One stream keeps the rows in the query's ORDER BY (a read split over streams is unordered).
            maxStreamCount: 1,
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
    let rows = 0;
    let resumes = 0;
    // An empty result has no streams at all.
    for (const stream of session.streams ?? []) {
      if (!stream.name) continue;
      const read = await readStream(client, stream.name, sink, env);
      rows += read.rows;
      resumes += read.resumes;
    }
    return { rows, streams: session.streams?.length ?? 0, resumes };
  } catch (err) {
    throw toJobError(err instanceof SinkFailure ? err.cause : err, "storage", env.ctx);
  }
}

async function readStream(client: BigQueryReadClient, name: string, sink: ReadSink, env: ReadEnv): Promise<{ rows: number; resumes: number }> {
  const retry = env.retry ?? DEFAULT_GCP_RETRY;
  const state = { offset: 0 };
  let resumes = 0;
  let failuresInARow = 0;
  for (;;) {
    const before = state.offset;
    try {
      await readFrom(client, name, state, sink, env.idleTimeoutMs ?? DEFAULT_READ_IDLE_TIMEOUT_MS);
      return { rows: state.offset, resumes };
    } catch (err) {
      if (err instanceof SinkFailure) throw err;
      // Only failures without progress count against the budget: a long read may drop many times.
      failuresInARow = state.offset > before ? 1 : failuresInARow + 1;
      if (!isRetryableFault(describeFault(err, "storage")) || failuresInARow >= retry.attempts) throw err;
      const delayMs = backoffDelayMs(failuresInARow, retry.baseDelayMs, retry.maxDelayMs);
      env.onRetry?.({ api: "storage", what: `ReadRows ${name} from offset ${state.offset}`, attempt: failuresInARow, delayMs, error: err });
      await sleep(delayMs);
      resumes++;
    }
  }
}

/** One ReadRows call from `state.offset`; advances the offset batch by batch. */
async function readFrom(client: BigQueryReadClient, name: string, state: { offset: number }, sink: ReadSink, idleTimeoutMs: number): Promise<void> {
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
    for await (const response of call) {
      clearTimeout(idle);
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

