// The Storage Read API stand-in: google.cloud.bigquery.storage.v1.BigQueryRead over gRPC
// (@grpc/grpc-js with the .proto definitions shipped inside @google-cloud/bigquery-storage).
// CreateReadSession reads a warehouse table or a query job's result table, with the selected
// fields (unknown ones refused; sent in the table's column order, not the request's, as BigQuery
// does) and a row restriction (the service's subset, row-restriction.ts; anything else refused
// with INVALID_ARGUMENT). It honours max_stream_count: a session gets up to that many streams
// (0: up to 16), one per `streamRows` rows (none for an empty read, as BigQuery does), and a table's
// rows are dealt to the streams in no key order; only a query result read in one stream keeps its
// order. It reports estimated_total_bytes_scanned (the selected columns over the whole table, as an
// unpartitioned table is billed). ReadRows streams Arrow IPC record-batch messages from the
// requested row offset, built with apache-arrow from DuckDB's values: TIMESTAMP as
// Timestamp<MICROSECOND, UTC>, FLOAT64 as Float64, INT64 as Int64, as BigQuery sends them.
// The server sits behind a small TCP proxy so a fault can cut a client's connection mid-stream.
import net from "node:net";
import { createRequire } from "node:module";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  Bool,
  DateDay,
  Field,
  Float64,
  Int64,
  Message,
  RecordBatch,
  Schema,
  Struct,
  Table,
  TimeUnit,
  Timestamp,
  Utf8,
  makeData,
  tableToIPC,
  vectorFromArray,
  type Data,
  type DataType,
} from "apache-arrow";
import { DuckDBDateValue, DuckDBTimestampTZValue, DuckDBTimestampValue, type DuckDBValue } from "@duckdb/node-api";
import type { StandInContext, StandInRequest } from "./bigquery.ts";
import { takeFault } from "./bigquery.ts";
import { RestrictionError, translateRowRestriction } from "./row-restriction.ts";
import { RESULTS_DATASET, bigQueryType, type ResultColumn, valueBytes } from "./warehouse.ts";

const require = createRequire(import.meta.url);
const PROTOS = require("@google-cloud/bigquery-storage/build/protos/protos.json") as Parameters<typeof protoLoader.fromJSON>[0];

interface Session {
  name: string;
  dataset: string;
  table: string;
  duckName: string;
  columns: ResultColumn[];
  where: string | undefined;
  rows: number;
  /** Rows of each stream. */
  streamRows: number[];
  /** Rows dealt to the streams out of key order (everything but a query result read in one stream). */
  unordered: boolean;
  schema: Schema;
}

/** Streams a session gets when max_stream_count is 0 ("the server decides"), at most. */
const DEFAULT_MAX_STREAMS = 16;

/** Bytes a value of a DuckDB type costs in BigQuery's storage (what a read is billed on); strings guessed. */

function arrowType(duckType: string): DataType {
  switch (duckType.toUpperCase()) {
    case "TIMESTAMP WITH TIME ZONE":
      return new Timestamp(TimeUnit.MICROSECOND, "UTC");
    case "TIMESTAMP":
      return new Timestamp(TimeUnit.MICROSECOND);
    case "DOUBLE":
    case "FLOAT":
    case "REAL":
      return new Float64();
    case "BIGINT":
    case "INTEGER":
    case "SMALLINT":
    case "TINYINT":
      return new Int64();
    case "VARCHAR":
      return new Utf8();
    case "BOOLEAN":
      return new Bool();
    case "DATE":
      return new DateDay();
    default:
      throw new Error(`the stand-in cannot send ${duckType} as Arrow`);
  }
}

/** One column's Arrow data: fixed-width types built exactly from 64-bit values, the rest by apache-arrow's builders. */
function columnData(type: DataType, values: DuckDBValue[]): Data {
  const n = values.length;
  const valid = new Uint8Array(Math.ceil(n / 8));
  let nulls = 0;
  const mark = (i: number, ok: boolean) => (ok ? (valid[i >> 3]! |= 1 << (i & 7)) : nulls++);
  const withNulls = { nullCount: 0 } as { nullCount: number; nullBitmap?: Uint8Array };
  const finish = () => (nulls > 0 ? Object.assign(withNulls, { nullCount: nulls, nullBitmap: valid }) : withNulls);
  if (type instanceof Timestamp || type instanceof Int64) {
    const data = new BigInt64Array(n);
    values.forEach((v, i) => {
      mark(i, v !== null);
      if (v instanceof DuckDBTimestampTZValue || v instanceof DuckDBTimestampValue) data[i] = v.micros;
      else if (typeof v === "bigint") data[i] = v;
      else if (typeof v === "number") data[i] = BigInt(v);
    });
    return makeData({ type: type as Int64, length: n, data, ...finish() });
  }
  if (type instanceof Float64) {
    const data = new Float64Array(n);
    values.forEach((v, i) => {
      mark(i, v !== null);
      if (typeof v === "number") data[i] = v;
    });
    return makeData({ type, length: n, data, ...finish() });
  }
  if (type instanceof DateDay) {
    const data = new Int32Array(n);
    values.forEach((v, i) => {
      mark(i, v !== null);
      if (v instanceof DuckDBDateValue) data[i] = v.days;
    });
    return makeData({ type, length: n, data, ...finish() });
  }
  const plain = values.map((v) => (v === null ? null : type instanceof Bool ? Boolean(v) : String(v)));
  return vectorFromArray(plain, type as Utf8).data[0] as Data;
}

/** Splits an Arrow IPC stream into its encapsulated messages (continuation, length, metadata, body). */
function ipcMessages(ipc: Uint8Array): Uint8Array[] {
  const view = new DataView(ipc.buffer, ipc.byteOffset, ipc.byteLength);
  const out: Uint8Array[] = [];
  for (let p = 0; p + 8 <= ipc.length;) {
    const length = view.getInt32(p + 4, true);
    if (length === 0) break; // end-of-stream marker
    const message = Message.decode(ipc.subarray(p + 8, p + 8 + length));
    const end = p + 8 + length + Number(message.bodyLength);
    out.push(ipc.subarray(p, end));
    p = end;
  }
  return out;
}

function encodeBatch(schema: Schema, columns: DuckDBValue[][], rows: number): Uint8Array {
  const children = schema.fields.map((f, i) => columnData(f.type as DataType, columns[i] ?? []));
  const batch = new RecordBatch(schema, makeData({ type: new Struct(schema.fields), length: rows, nullCount: 0, children }));
  const message = ipcMessages(tableToIPC(new Table(schema, [batch]), "stream"))[1];
  if (!message) throw new Error("apache-arrow wrote no record batch");
  return message;
}

function schemaMessage(schema: Schema): Uint8Array {
  const message = ipcMessages(tableToIPC(new Table(schema), "stream"))[0];
  if (!message) throw new Error("apache-arrow wrote no schema");
  return message;
}

interface CreateRequest {
  parent?: string;
  maxStreamCount?: number | string;
  readSession?: { table?: string; dataFormat?: string; readOptions?: { selectedFields?: string[]; rowRestriction?: string } | null };
}

function grpcError(code: grpc.status, details: string): grpc.ServiceError {
  return Object.assign(new Error(details), { code, details, metadata: new grpc.Metadata() });
}

/** A TCP proxy in front of the gRPC server; `cut(peer)` drops the connection a call came in on. */
async function startProxy(target: number): Promise<{ port: number; cut(peer: string): void; close(): Promise<void> }> {
  const byUpstreamPort = new Map<number, () => void>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(target, "127.0.0.1");
    sockets.add(client).add(upstream);
    const kill = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    upstream.once("connect", () => upstream.localPort !== undefined && byUpstreamPort.set(upstream.localPort, kill));
    client.on("error", kill).on("close", kill);
    upstream.on("error", kill).on("close", kill);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut(peer) {
      const port = Number(peer.slice(peer.lastIndexOf(":") + 1));
      byUpstreamPort.get(port)?.();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export async function startStorageReadStandIn(ctx: StandInContext): Promise<{ endpoint: string; close(): Promise<void> }> {
  const definition = protoLoader.fromJSON(PROTOS, { longs: String, enums: String, defaults: true, oneofs: true });
  const service = (
    grpc.loadPackageDefinition(definition) as unknown as {
      google: { cloud: { bigquery: { storage: { v1: { BigQueryRead: { service: grpc.ServiceDefinition } } } } } };
    }
  ).google.cloud.bigquery.storage.v1.BigQueryRead.service;
  const wh = ctx.warehouse;
  const sessions = new Map<string, Session>();
  let sessionCount = 0;

  const log = (entry: Omit<StandInRequest, "api" | "at">): StandInRequest => {
    const e: StandInRequest = { api: "storage", at: Date.now(), ...entry };
    ctx.requests.push(e);
    return e;
  };

  async function createSession(request: CreateRequest, cancelled: Promise<void>): Promise<unknown> {
    const injected = takeFault(ctx.faults.grpcErrors, (f) => f.method === "CreateReadSession");
    if (injected) throw grpcError(injected.code, injected.message ?? `injected ${grpc.status[injected.code]}`);
    if (ctx.faults.readSessionDenied) {
      throw grpcError(
        grpc.status.PERMISSION_DENIED,
        `request failed: the user does not have 'bigquery.readsessions.create' permission for '${request.parent ?? ""}'`,
      );
    }
    const path = request.readSession?.table ?? "";
    const m = /^projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/]+)$/.exec(path);
    if (!m) throw grpcError(grpc.status.INVALID_ARGUMENT, `Invalid table name ${path}`);
    const [, project, dataset = "", table = ""] = m;
    if (ctx.faults.accessDeniedDatasets.has(dataset)) {
      throw grpcError(grpc.status.PERMISSION_DENIED, `Access Denied: Table ${project}:${dataset}.${table}: Permission bigquery.tables.getData denied`);
    }
    if (project !== wh.project || !wh.hasTable(dataset, table) || ctx.faults.missingTables.has(`${dataset}.${table}`)) {
      throw grpcError(grpc.status.NOT_FOUND, `Not found: Table ${project}:${dataset}.${table}`);
    }
    // A hanging table: its query jobs never finish, and a session on it never answers (until cancelled).
    if (ctx.faults.hangingTables.has(`${dataset}.${table}`)) {
      await cancelled;
      throw grpcError(grpc.status.CANCELLED, "cancelled by the client");
    }
    const wait = ctx.faults.sessionLatencyMs;
    const waitMs = typeof wait === "number" ? wait : wait[0] + ctx.random() * (wait[1] - wait[0]);
    if (waitMs > 0) await new Promise((resolve) => setTimeout(resolve, waitMs).unref());
    const maxStreams = Number(request.maxStreamCount ?? 0);
    if (!Number.isInteger(maxStreams) || maxStreams < 0)
      throw grpcError(grpc.status.INVALID_ARGUMENT, `max_stream_count must be non-negative (got ${request.maxStreamCount})`);
    if (request.readSession?.dataFormat !== "ARROW") throw grpcError(grpc.status.INVALID_ARGUMENT, "The stand-in serves data_format ARROW only");
    const duckName = wh.duckName(dataset, table);
    const all = await wh.withConnection((c) => wh.columnsOf(c, duckName));
    const selected = request.readSession.readOptions?.selectedFields ?? [];
    for (const name of selected) {
      if (!all.some((x) => x.name.toLowerCase() === name.toLowerCase()))
        throw grpcError(grpc.status.INVALID_ARGUMENT, `Field ${name} not found in table ${dataset}.${table}`);
    }
    // The table's order, whatever the order asked for.
    const columns = selected.length === 0 ? all : all.filter((c) => selected.some((name) => name.toLowerCase() === c.name.toLowerCase()));
    const restriction = request.readSession.readOptions?.rowRestriction;
    let where: string | undefined;
    try {
      where = restriction
        ? translateRowRestriction(
            restriction,
            all.map((c) => ({ name: c.name, type: bigQueryType(c.duckType)[0] })),
          )
        : undefined;
    } catch (err) {
      if (err instanceof RestrictionError)
        throw grpcError(grpc.status.INVALID_ARGUMENT, `request failed: row restriction ${JSON.stringify(restriction)}: ${err.message}`);
      throw err;
    }
    const rows = await wh.rowCount(duckName, where);
    const tableRows = await wh.rowCount(duckName);
    const want = Math.min(maxStreams === 0 ? DEFAULT_MAX_STREAMS : maxStreams, Math.ceil(rows / ctx.streamRows));
    const streamCount = rows === 0 ? 0 : Math.max(1, want);
    const unordered = dataset !== RESULTS_DATASET || streamCount > 1;
    const streamRows = await wh.withConnection(async (c) => {
      const counts = new Array<number>(streamCount).fill(0);
      if (streamCount === 0) return counts;
      const r = await c.runAndReadAll(`SELECT rowid % ${streamCount} AS s, count(*) FROM ${duckName}${where ? ` WHERE ${where}` : ""} GROUP BY s`);
      for (const [stream, n] of r.getRowsJS()) counts[Number(stream)] = Number(n);
      return counts;
    });
    const schema = new Schema(columns.map((c) => new Field(c.name, arrowType(c.duckType), true)));
    const name = `projects/${wh.project}/locations/${wh.location.toLowerCase()}/sessions/s${++sessionCount}`;
    const session: Session = { name, dataset, table, duckName, columns, where, rows, streamRows, unordered, schema };
    sessions.set(name, session);
    return {
      name,
      dataFormat: "ARROW",
      arrowSchema: { serializedSchema: Buffer.from(schemaMessage(schema)) },
      table: path,
      streams: streamRows.map((_, i) => ({ name: `${name}/streams/${i}` })),
      estimatedRowCount: String(rows),
      estimatedTotalBytesScanned: String(tableRows * columns.reduce((n, c) => n + valueBytes(c.duckType), 0)),
      expireTime: { seconds: String(Math.floor(Date.now() / 1000) + 6 * 3600), nanos: 0 },
    };
  }

  async function readRows(call: grpc.ServerWritableStream<{ readStream?: string; offset?: string }, unknown>): Promise<void> {
    const streamName = call.request.readStream ?? "";
    const offset = Number(call.request.offset ?? 0);
    const entry = log({ method: "ReadRows", status: "RUNNING", stream: streamName, offset, rows: 0 });
    const fail = (code: grpc.status, details: string) => {
      entry.status = grpc.status[code];
      call.emit("error", grpcError(code, details));
    };
    const injected = takeFault(ctx.faults.grpcErrors, (f) => f.method === "ReadRows");
    if (injected) return fail(injected.code, injected.message ?? `injected ${grpc.status[injected.code]}`);
    const session = sessions.get(streamName.replace(/\/streams\/[^/]+$/, ""));
    const stream = Number(/\/streams\/(\d+)$/.exec(streamName)?.[1] ?? -1);
    const streamRows = session?.streamRows[stream];
    if (!session || streamRows === undefined) return fail(grpc.status.NOT_FOUND, `Not found: stream ${streamName}`);
    Object.assign(entry, { dataset: session.dataset, table: session.table });
    if (!Number.isInteger(offset) || offset < 0 || offset > streamRows)
      return fail(grpc.status.OUT_OF_RANGE, `offset ${offset} is beyond the ${streamRows} rows of the stream`);
    // A drop is spent only on a stream long enough to break after its batches.
    const drop = takeFault(ctx.faults.readRowsDrops, (d) => streamRows - offset > d.afterBatches * ctx.batchRows);
    const cancelled = new Promise<void>((resolve) => call.once("cancelled", () => resolve()));
    let sent = 0;
    let batches = 0;
    await wh.withConnection(async (c) => {
      const select = session.columns.map((col) => `"${col.name.replaceAll('"', '""')}"`).join(", ");
      const streams = session.streamRows.length;
      const where = [...(session.where ? [session.where] : []), ...(streams > 1 ? [`rowid % ${streams} = ${stream}`] : [])];
      // rowid is fixed for a read-only table, so a resumed stream sees the same order.
      const order = session.unordered ? "hash(rowid * 7919 + 13), rowid" : "rowid";
      const result = await c.stream(
        `SELECT ${select} FROM ${session.duckName}${where.length ? ` WHERE ${where.join(" AND ")}` : ""} ORDER BY ${order} OFFSET ${offset}`,
      );
      for (let chunk = await result.fetchChunk(); chunk && chunk.rowCount > 0; chunk = await result.fetchChunk()) {
        const columns = chunk.getColumns();
        for (let start = 0; start < chunk.rowCount; start += ctx.batchRows) {
          if (call.cancelled) return;
          if (drop && batches >= drop.afterBatches) {
            if (drop.mode === "stall") {
              entry.status = "STALLED";
              await cancelled;
            } else if (drop.mode === "disconnect") {
              entry.status = "DISCONNECTED";
              // Set before any call: clients reach the server only through the proxy.
              proxy.cut(call.getPeer());
            } else {
              fail(
                drop.mode === "internal" ? grpc.status.INTERNAL : grpc.status.UNAVAILABLE,
                drop.mode === "internal" ? "Received RST_STREAM with code 2 (Internal server error)" : "Connection reset by the stand-in (injected)",
              );
            }
            return;
          }
          const n = Math.min(ctx.batchRows, chunk.rowCount - start);
          const slice = columns.map((col) => col.slice(start, start + n));
          const batch = encodeBatch(session.schema, slice, n);
          const progress = { atResponseStart: (offset + sent) / streamRows, atResponseEnd: (offset + sent + n) / streamRows };
          const more = call.write({
            arrowRecordBatch: { serializedRecordBatch: Buffer.from(batch), rowCount: String(n) },
            rowCount: String(n),
            stats: { progress },
          });
          sent += n;
          batches++;
          entry.rows = sent;
          ctx.served.tableRows += n;
          ctx.served.tableBytes += batch.byteLength;
          if (!more) await Promise.race([new Promise((resolve) => call.once("drain", resolve)), cancelled]);
        }
      }
      entry.status = "OK";
      call.end();
      if (session.dataset === RESULTS_DATASET && offset + sent === streamRows) ctx.resultRead(session.table);
    });
  }

  const server = new grpc.Server();
  server.addService(service, {
    CreateReadSession: (call: grpc.ServerUnaryCall<CreateRequest, unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const entry = log({ method: "CreateReadSession", status: "RUNNING", table: call.request.readSession?.table ?? "" });
      const cancelled = new Promise<void>((resolve) => call.once("cancelled", () => resolve()));
      createSession(call.request, cancelled).then(
        (session) => {
          entry.status = "OK";
          entry.streams = (session as { streams: unknown[] }).streams.length;
          callback(null, session);
        },
        (err: grpc.ServiceError) => {
          entry.status = grpc.status[err.code] ?? "INTERNAL";
          callback(err.code === undefined ? grpcError(grpc.status.INTERNAL, err.message) : err);
        },
      );
    },
    ReadRows: (call: grpc.ServerWritableStream<{ readStream?: string; offset?: string }, unknown>) => {
      readRows(call).catch((err: Error) => call.emit("error", grpcError(grpc.status.INTERNAL, err.message)));
    },
    SplitReadStream: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, {}),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const proxy = await startProxy(port);
  return {
    endpoint: `http://127.0.0.1:${proxy.port}`,
    async close() {
      server.forceShutdown();
      await proxy.close();
    },
  };
}
