// The gcp path of a read, run inside a pool worker, by one of two routes:
// - table (the default): a Storage Read session on the source table itself, its feature columns as
//   selected fields and the date range (and a slice's key range, the target's not-null rule) as a
//   row restriction. No query job. Large tables come in several streams, in no order; the frame is
//   sorted by key afterwards.
// - query (ROW_LIMIT, or BQ_READ_ROUTE=query): the production query as a BigQuery job, its result
//   read back through the Storage Read API in one stream, in the query's order.
// Either way the rows reach polars as one frame, key first, columns renamed to the output's names.
// Everything here awaits I/O, so one worker thread carries several reads at once (piscina's
// concurrentTasksPerWorker) while BigQuery works.
import { BigQuery } from "@google-cloud/bigquery";
import { DataType, MessageHeader, MessageReader, RecordBatchReader, TimeUnit } from "apache-arrow";
import pl from "nodejs-polars";
import { KEY_COLUMN } from "../constants.ts";
import { JobError } from "../errors.ts";
import type { SliceBounds, TableQuery, ExtractedRows, GcpTaskSettings, WarehouseExtraction } from "./port.ts";
import type { FailureContext } from "../gcp/errors.ts";
import { workerClients } from "./bigquery-clients.ts";
import { runQueryJob } from "./bigquery-query.ts";
import { READ_STREAMS_PER_SESSION } from "../concurrency.ts";
import { bigQueryExtractionSql, readRouteFor, tableRowRestriction } from "./bigquery-sql.ts";
import { readTableArrow, type ReadSink } from "./bigquery-read.ts";

export { bigQueryExtractionSql, keyLiteral, readRouteFor, tableRowRestriction } from "./bigquery-sql.ts";

/** A microsecond key as a TIMESTAMP query parameter (the client sends the text; BigQuery keeps µs). */
function timestampParam(micros: bigint): ReturnType<typeof BigQuery.timestamp> {
  const seconds = micros / 1_000_000n;
  const fraction = String(micros - seconds * 1_000_000n).padStart(6, "0");
  const text = new Date(Number(seconds) * 1000).toISOString().slice(0, 19);
  return BigQuery.timestamp(`${text}.${fraction}Z`);
}

/**
 * Collects a read's Arrow messages and checks the schema is the one asked for: in order for a query
 * result; as a set for a table read, whose session sends the selected fields in the table's order.
 */
class FrameSink implements ReadSink {
  private schema: Buffer | undefined;
  private readonly batches: Buffer[] = [];
  private readonly label: string;
  private readonly columns: readonly string[];
  private readonly anyOrder: boolean;

  constructor(label: string, columns: readonly string[], anyOrder = false) {
    this.label = label;
    this.columns = columns;
    this.anyOrder = anyOrder;
  }

  onSchema(serializedSchema: Uint8Array): void {
    const bytes = Buffer.from(serializedSchema);
    const reader = RecordBatchReader.from(bytes);
    reader.open();
    const names = reader.schema.fields.map((f) => f.name);
    const asked = this.anyOrder ? [...this.columns].sort() : this.columns;
    const got = this.anyOrder ? [...names].sort() : names;
    if (got.length !== asked.length || got.some((n, i) => n !== asked[i])) {
      throw new JobError(
        `${this.label}: the query result has columns ${names.slice(0, 5).join(", ")}${names.length > 5 ? ", ..." : ""} (${names.length}), expected ${this.columns.length} starting ${this.columns.slice(0, 5).join(", ")}`,
        {
          reason: "bigquery-unexpected-schema",
          fix: "column names must be unique ignoring case in BigQuery; check the table's schema",
        },
      );
    }
    const key = reader.schema.fields.find((f) => f.name === KEY_COLUMN)?.type as DataType | undefined;
    if (!(key !== undefined && DataType.isTimestamp(key) && key.unit === TimeUnit.MICROSECOND)) {
      throw new JobError(
        `${this.label}.${KEY_COLUMN} arrives as ${key === undefined ? "nothing" : (key as DataType & { toString(): string }).toString()}, expected Timestamp<MICROSECOND>`,
        {
          reason: "bigquery-unexpected-schema",
          fix: `${KEY_COLUMN} must be a BigQuery TIMESTAMP column`,
        },
      );
    }
    this.schema = bytes;
  }

  async onBatch(serializedBatch: Uint8Array, declaredRows: number): Promise<number> {
    if (!this.schema) throw new Error("record batch before the schema");
    const bytes = Buffer.from(serializedBatch);
    // The rows from each message's header, the body's length checked; the columns are decoded
    // once, by polars, when the frame is built.
    const reader = new MessageReader(bytes);
    let decoded = 0;
    for (let message = reader.readMessage(); message; message = reader.readMessage()) {
      if (!message.isRecordBatch()) throw new Error(`a ReadRows response holds a ${MessageHeader[message.headerType]} message, expected record batches`);
      if (reader.readMessageBody(message.bodyLength).byteLength !== message.bodyLength) throw new Error("a record batch is cut short");
      decoded += message.header().length;
    }
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

export interface BigQueryRows {
  /** Key first, then the columns under their output names, in key order. */
  frame: pl.DataFrame;
  /** Retried requests and resumed streams. */
  retries: number;
  route: "table" | "query";
  /** The read session's estimate of the bytes it scans (the table route's billing). */
  bytesScanned: number;
  /** Streams the session gave. */
  streams: number;
}

/** Rows of one table (a slice's key range, or the whole table for the target): a table read, or a query job and a read of its result. */
export async function readBigQueryRows(gcp: GcpTaskSettings, query: TableQuery, slice: SliceBounds | undefined): Promise<BigQueryRows> {
  const label = `${query.dataset}.${query.table}`;
  const fullName = `${gcp.project}.${label}`;
  const route = readRouteFor(gcp, query);
  const ctx: FailureContext = {
    action: `${route === "table" ? "reading" : "querying"} ${fullName}`,
    project: gcp.project,
    location: gcp.location,
    dataset: query.dataset,
    table: query.table,
  };
  // Retried requests and resumed streams, reported with the result (a worker has no logger).
  let retries = 0;
  const onRetry = () => void retries++;
  try {
    const { bigquery, read } = await workerClients(gcp);
    if (route === "table") {
      const sources = [KEY_COLUMN, ...query.columns.map((c) => c.source)];
      const sink = new FrameSink(label, sources, true);
      const stats = await readTableArrow(
        read,
        { projectId: gcp.project, datasetId: query.dataset, tableId: query.table },
        sink,
        {
          project: gcp.project,
          retry: gcp.retry,
          idleTimeoutMs: gcp.readIdleTimeoutMs,
          onRetry,
          ctx,
        },
        { selectedFields: sources, rowRestriction: tableRowRestriction(query, slice), maxStreamCount: READ_STREAMS_PER_SESSION },
      );
      // The session's order is the table's, its rows in no order across streams: the output's names
      // in the output's order, sorted by key as the query route's ORDER BY would give them.
      // A DATETIME key arrives without a time zone: its values are UTC (as the query route's TIMESTAMP(key)).
      const key = query.zonelessKey ? pl.col(KEY_COLUMN).dt.replaceTimeZone("UTC") : pl.col(KEY_COLUMN);
      const frame = sink
        .frame()
        .select(key, ...query.columns.map((c) => pl.col(c.source).alias(c.target)))
        .sort(KEY_COLUMN);
      return { frame, retries, route, bytesScanned: stats.estimatedBytesScanned, streams: stats.streams };
    }
    const sink = new FrameSink(label, [KEY_COLUMN, ...query.columns.map((c) => c.target)]);
    const params: Record<string, unknown> = { date_from: BigQuery.date(query.dateFrom), date_to: BigQuery.date(query.dateTo) };
    if (slice?.afterKey !== undefined) params.after_key = timestampParam(slice.afterKey);
    if (slice?.throughKey !== undefined) params.through_key = timestampParam(slice.throughKey);
    const { destination } = await runQueryJob(
      bigquery,
      { sql: bigQueryExtractionSql(query, gcp.project, slice), params, timeoutMs: gcp.queryTimeoutMs, jobPrefix: `bqx_extract_${query.table}` },
      { retry: gcp.retry, ctx, onRetry },
    );
    const stats = await readTableArrow(read, destination, sink, {
      project: gcp.project,
      retry: gcp.retry,
      idleTimeoutMs: gcp.readIdleTimeoutMs,
      onRetry,
      ctx: { ...ctx, action: `reading the result of ${fullName} (${destination.datasetId}.${destination.tableId})` },
    });
    return { frame: sink.frame(), retries, route, bytesScanned: stats.estimatedBytesScanned, streams: stats.streams };
  } catch (err) {
    if (err instanceof JobError) throw err;
    throw new JobError(`extracting ${label} from BigQuery failed: ${(err as Error).message}`, { reason: "extract-failed", retryable: true, cause: err });
  }
}

/** BigQuery's extraction: reads through this worker thread's clients (workerClients), by the route readRouteFor picks. */
export class BigQueryExtraction implements WarehouseExtraction {
  private readonly gcp: GcpTaskSettings;

  constructor(gcp: GcpTaskSettings) {
    this.gcp = gcp;
  }

  readTarget(query: TableQuery): Promise<ExtractedRows> {
    return this.read(query, undefined);
  }

  readSlice(query: TableQuery, slice: SliceBounds): Promise<ExtractedRows> {
    return this.read(query, slice);
  }

  private async read(query: TableQuery, slice: SliceBounds | undefined): Promise<ExtractedRows> {
    const got = await readBigQueryRows(this.gcp, query, slice);
    return { frame: got.frame, retries: got.retries, read: { route: got.route, bytesScanned: got.bytesScanned, streams: got.streams } };
  }
}
