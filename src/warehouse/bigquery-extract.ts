// The gcp path of a read, run inside a pool worker: the production query as a BigQuery job (for
// a slice, with the slice's key range), its result read back through the Storage Read API as
// Arrow, handed to polars as one frame. Everything here awaits I/O, so one worker thread carries
// several reads at once (piscina's concurrentTasksPerWorker) while BigQuery works.
import { BigQuery } from "@google-cloud/bigquery";
import { DataType, RecordBatchReader, TimeUnit } from "apache-arrow";
import pl from "nodejs-polars";
import { KEY_COLUMN } from "../constants.ts";
import { JobError } from "../errors.ts";
import type { SliceBounds, TableQuery } from "../extract/task.ts";
import type { FailureContext } from "../gcp/errors.ts";
import { workerClients } from "./bigquery-clients.ts";
import { quoteBigQueryIdent, runQueryJob } from "./bigquery-query.ts";
import { readTableArrow, type ReadSink } from "./bigquery-read.ts";
import type { GcpTaskSettings } from "./port.ts";

/** A microsecond key as a TIMESTAMP query parameter (the client sends the text; BigQuery keeps µs). */
function timestampParam(micros: bigint): ReturnType<typeof BigQuery.timestamp> {
  const seconds = micros / 1_000_000n;
  const fraction = String(micros - seconds * 1_000_000n).padStart(6, "0");
  const text = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return BigQuery.timestamp(`${text}.${fraction}Z`);
}

/**
 * The production query shape in GoogleSQL: `DATE(interval_time) BETWEEN @date_from AND @date_to`
 * with DATE query parameters (never spliced dates), identifiers in backticks, columns renamed in
 * the SELECT so the result already has the output's names. For a slice, the key range as TIMESTAMP
 * parameters; with ROW_LIMIT, the table's first N rows by time first. A DATETIME key (no time
 * zone) is read as the UTC TIMESTAMP `TIMESTAMP(key)`.
 */
export function bigQueryExtractionSql(query: Pick<TableQuery, "dataset" | "table" | "columns" | "rowLimit" | "notNullColumn" | "zonelessKey">, project: string, slice?: Pick<SliceBounds, "afterKey" | "throughKey">): string {
  const q = quoteBigQueryIdent;
  const asUtc = query.zonelessKey ? `TIMESTAMP(${q(KEY_COLUMN)})` : q(KEY_COLUMN);
  const select = [query.zonelessKey ? `${asUtc} AS ${q(KEY_COLUMN)}` : q(KEY_COLUMN), ...query.columns.map((c) => (c.source === c.target ? q(c.source) : `${q(c.source)} AS ${q(c.target)}`))];
  const where = [`DATE(${q(KEY_COLUMN)}) BETWEEN @date_from AND @date_to`, ...(query.notNullColumn ? [`${q(query.notNullColumn)} IS NOT NULL`] : [])];
  // On the table the key is compared as UTC; outside the ROW_LIMIT subquery it already is.
  const boundsOn = (key: string) => [...(slice?.afterKey !== undefined ? [`${key} > @after_key`] : []), ...(slice?.throughKey !== undefined ? [`${key} <= @through_key`] : [])];
  const bounds = boundsOn(asUtc);
  const from = q(`${project}.${query.dataset}.${query.table}`);
  if (query.rowLimit === undefined) return `SELECT ${select.join(", ")} FROM ${from} WHERE ${[...where, ...bounds].join(" AND ")} ORDER BY ${q(KEY_COLUMN)}`;
  const limited = `SELECT ${select.join(", ")} FROM ${from} WHERE ${where.join(" AND ")} ORDER BY ${q(KEY_COLUMN)} LIMIT ${query.rowLimit}`;
  return bounds.length === 0 ? limited : `SELECT * FROM (${limited}) WHERE ${boundsOn(q(KEY_COLUMN)).join(" AND ")} ORDER BY ${q(KEY_COLUMN)}`;
}

/** Collects a read's Arrow messages and checks the schema is the one asked for. */
class FrameSink implements ReadSink {
  private schema: Buffer | undefined;
  private readonly batches: Buffer[] = [];
  private readonly label: string;
  private readonly columns: readonly string[];

  constructor(label: string, columns: readonly string[]) {
    this.label = label;
    this.columns = columns;
  }

  onSchema(serializedSchema: Uint8Array): void {
    const bytes = Buffer.from(serializedSchema);
    const reader = RecordBatchReader.from(bytes);
    reader.open();
    const names = reader.schema.fields.map((f) => f.name);
    if (names.length !== this.columns.length || names.some((n, i) => n !== this.columns[i])) {
      throw new JobError(`${this.label}: the query result has columns ${names.slice(0, 5).join(", ")}${names.length > 5 ? ", ..." : ""} (${names.length}), expected ${this.columns.length} starting ${this.columns.slice(0, 5).join(", ")}`, {
        reason: "bigquery-unexpected-schema",
        fix: "column names must be unique ignoring case in BigQuery; check the table's schema",
      });
    }
    const key = reader.schema.fields[0]?.type;
    if (!(key !== undefined && DataType.isTimestamp(key) && key.unit === TimeUnit.MICROSECOND)) {
      throw new JobError(`${this.label}.${KEY_COLUMN} arrives as ${String(key)}, expected Timestamp<MICROSECOND>`, {
        reason: "bigquery-unexpected-schema",
        fix: `${KEY_COLUMN} must be a BigQuery TIMESTAMP column`,
      });
    }
    this.schema = bytes;
  }

  async onBatch(serializedBatch: Uint8Array, declaredRows: number): Promise<number> {
    if (!this.schema) throw new Error("record batch before the schema");
    const bytes = Buffer.from(serializedBatch);
    let decoded = 0;
    for (const batch of RecordBatchReader.from(Buffer.concat([this.schema, bytes]))) decoded += batch.numRows;
    if (declaredRows > 0 && decoded !== declaredRows) throw new Error(`a record batch holds ${decoded} rows but its response says ${declaredRows}`);
    this.batches.push(bytes);
    return decoded;
  }

  frame(): pl.DataFrame {
    if (!this.schema) throw new Error(`${this.label}: the read returned no schema`);
    // polars reads Arrow IPC exactly: 64-bit integers and microsecond timestamps stay 64-bit.
    return pl.readIPCStream(Buffer.concat([this.schema, ...this.batches]));
  }
}

/** Rows of one table (a slice's key range, or the whole table for the target) through a query job and a read session. */
export async function readBigQueryRows(gcp: GcpTaskSettings, query: TableQuery, slice: SliceBounds | undefined): Promise<{ frame: pl.DataFrame; retries: number }> {
  const label = `${query.dataset}.${query.table}`;
  const fullName = `${gcp.project}.${label}`;
  const ctx: FailureContext = { action: `querying ${fullName}`, project: gcp.project, location: gcp.location, dataset: query.dataset, table: query.table };
  const sink = new FrameSink(label, [KEY_COLUMN, ...query.columns.map((c) => c.target)]);
  // Retried requests and resumed streams, reported with the result (a worker has no logger).
  let retries = 0;
  const onRetry = () => void retries++;
  try {
    const { bigquery, read } = await workerClients(gcp);
    const params: Record<string, unknown> = { date_from: BigQuery.date(query.dateFrom), date_to: BigQuery.date(query.dateTo) };
    if (slice?.afterKey !== undefined) params.after_key = timestampParam(slice.afterKey);
    if (slice?.throughKey !== undefined) params.through_key = timestampParam(slice.throughKey);
    const { destination } = await runQueryJob(
      bigquery,
      { sql: bigQueryExtractionSql(query, gcp.project, slice), params, timeoutMs: gcp.queryTimeoutMs, jobPrefix: `bqx_extract_${query.table}` },
      { retry: gcp.retry, ctx, onRetry },
    );
    await readTableArrow(read, destination, sink, {
      project: gcp.project,
      retry: gcp.retry,
      idleTimeoutMs: gcp.readIdleTimeoutMs,
      onRetry,
      ctx: { ...ctx, action: `reading the result of ${fullName} (${destination.datasetId}.${destination.tableId})` },
    });
    return { frame: sink.frame(), retries };
  } catch (err) {
    if (err instanceof JobError) throw err;
    throw new JobError(`extracting ${label} from BigQuery failed: ${(err as Error).message}`, { reason: "extract-failed", retryable: true, cause: err });
  }
}
