// The Storage Read API stand-in: google.cloud.bigquery.storage.v1.BigQueryRead over gRPC
// (@grpc/grpc-js with the .proto definitions shipped inside @google-cloud/bigquery-storage).
// CreateReadSession returns the table's Arrow schema as an IPC message and one stream (none for
// an empty table, as BigQuery does); ReadRows streams Arrow IPC record-batch messages from the
// requested row offset, built with apache-arrow from DuckDB's values: TIMESTAMP as
// Timestamp<MICROSECOND, UTC>, FLOAT64 as Float64, INT64 as Int64, as BigQuery sends them.
// The server sits behind a small TCP proxy so a fault can cut a client's connection mid-stream.
import net from "node:net";
import { createRequire } from "node:module";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import {
  Bool, DateDay, Field, Float64, Int64, Message, RecordBatch, Schema, Struct, Table, TimeUnit, Timestamp, Utf8,
  makeData, tableToIPC, vectorFromArray, type Data, type DataType,
} from "apache-arrow";
import { DuckDBDateValue, DuckDBTimestampTZValue, DuckDBTimestampValue, type DuckDBValue } from "@duckdb/node-api";
import type { StandInContext, StandInRequest } from "./bigquery-standin.ts";
import { takeFault } from "./bigquery-standin.ts";
import { RESULTS_DATASET, type ResultColumn } from "./standin-warehouse.ts";

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
  schema: Schema;
}

function arrowType(duckType: string): DataType {
  switch (duckType.toUpperCase()) {
    case "TIMESTAMP WITH TIME ZONE": return new Timestamp(TimeUnit.MICROSECOND, "UTC");
    case "TIMESTAMP": return new Timestamp(TimeUnit.MICROSECOND);
    case "DOUBLE": case "FLOAT": case "REAL": return new Float64();
    case "BIGINT": case "INTEGER": case "SMALLINT": case "TINYINT": return new Int64();
    case "VARCHAR": return new Utf8();
    case "BOOLEAN": return new Bool();
    case "DATE": return new DateDay();
    default: throw new Error(`the stand-in cannot send ${duckType} as Arrow`);
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
  for (let p = 0; p + 8 <= ipc.length; ) {
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
  const children = schema.fields.map((f, i) => columnData(f.type, columns[i] ?? []));
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
  const service = (grpc.loadPackageDefinition(definition) as unknown as { google: { cloud: { bigquery: { storage: { v1: { BigQueryRead: { service: grpc.ServiceDefinition } } } } } } })
    .google.cloud.bigquery.storage.v1.BigQueryRead.service;
  const wh = ctx.warehouse;
  const sessions = new Map<string, Session>();
  let sessionCount = 0;
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;

  const log = (entry: Omit<StandInRequest, "api" | "at">): StandInRequest => {
    const e: StandInRequest = { api: "storage", at: Date.now(), ...entry };
    ctx.requests.push(e);
    return e;
  };

  async function createSession(request: { parent?: string; readSession?: { table?: string; dataFormat?: string; readOptions?: { selectedFields?: string[]; rowRestriction?: string } | null } }): Promise<unknown> {
    const injected = takeFault(ctx.faults.grpcErrors, (f) => f.method === "CreateReadSession");
    if (injected) throw grpcError(injected.code, injected.message ?? `injected ${grpc.status[injected.code]}`);
    if (ctx.faults.readSessionDenied) {
      throw grpcError(grpc.status.PERMISSION_DENIED, `request failed: the user does not have 'bigquery.readsessions.create' permission for '${request.parent ?? ""}'`);
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
    if (request.readSession?.dataFormat !== "ARROW") throw grpcError(grpc.status.INVALID_ARGUMENT, "The stand-in serves data_format ARROW only");
    const duckName = wh.duckName(dataset, table);
    const all = await wh.withConnection((c) => wh.columnsOf(c, duckName));
    const selected = request.readSession.readOptions?.selectedFields ?? [];
    const columns = selected.length === 0 ? all : selected.map((name) => {
      const c = all.find((x) => x.name === name);
      if (!c) throw grpcError(grpc.status.INVALID_ARGUMENT, `Field ${name} not found in ${table}`);
      return c;
    });
    const restriction = request.readSession.readOptions?.rowRestriction;
    const where = restriction ? wh.translate(restriction).sql : undefined;
    const rows = await wh.rowCount(duckName, where);
    const schema = new Schema(columns.map((c) => new Field(c.name, arrowType(c.duckType), true)));
    const name = `projects/${wh.project}/locations/${wh.location.toLowerCase()}/sessions/s${++sessionCount}`;
    const session: Session = { name, dataset, table, duckName, columns, where, rows, schema };
    sessions.set(name, session);
    return {
      name,
      dataFormat: "ARROW",
      arrowSchema: { serializedSchema: Buffer.from(schemaMessage(schema)) },
      table: path,
      streams: rows > 0 ? [{ name: `${name}/streams/0` }] : [],
      estimatedRowCount: String(rows),
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
    if (!session || !streamName.endsWith("/streams/0")) return fail(grpc.status.NOT_FOUND, `Not found: stream ${streamName}`);
    Object.assign(entry, { dataset: session.dataset, table: session.table });
    if (!Number.isInteger(offset) || offset < 0 || offset > session.rows) return fail(grpc.status.OUT_OF_RANGE, `offset ${offset} is beyond the ${session.rows} rows of the stream`);
    const drop = takeFault(ctx.faults.readRowsDrops, () => true);
    const cancelled = new Promise<void>((resolve) => call.once("cancelled", () => resolve()));
    let sent = 0;
    let batches = 0;
    await wh.withConnection(async (c) => {
      const select = session.columns.map((col) => `"${col.name.replaceAll('"', '""')}"`).join(", ");
      const result = await c.stream(`SELECT ${select} FROM ${session.duckName}${session.where ? ` WHERE ${session.where}` : ""} OFFSET ${offset}`);
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
              proxy?.cut(call.getPeer());
            } else {
              fail(drop.mode === "internal" ? grpc.status.INTERNAL : grpc.status.UNAVAILABLE, drop.mode === "internal" ? "Received RST_STREAM with code 2 (Internal server error)" : "Connection reset by the stand-in (injected)");
            }
            return;
          }
          const n = Math.min(ctx.batchRows, chunk.rowCount - start);
          const slice = columns.map((col) => col.slice(start, start + n));
          const batch = encodeBatch(session.schema, slice, n);
          const progress = { atResponseStart: (offset + sent) / session.rows, atResponseEnd: (offset + sent + n) / session.rows };
          const more = call.write({ arrowRecordBatch: { serializedRecordBatch: Buffer.from(batch), rowCount: String(n) }, rowCount: String(n), stats: { progress } });
          sent += n;
          batches++;
          entry.rows = sent;
          if (!more) await Promise.race([new Promise((resolve) => call.once("drain", resolve)), cancelled]);
        }
      }
      entry.status = "OK";
      call.end();
      if (session.dataset === RESULTS_DATASET && offset + sent === session.rows) ctx.resultRead(session.table);
    });
  }

  const server = new grpc.Server();
  server.addService(service, {
    CreateReadSession: (call: grpc.ServerUnaryCall<Parameters<typeof createSession>[0], unknown>, callback: grpc.sendUnaryData<unknown>) => {
      const entry = log({ method: "CreateReadSession", status: "RUNNING", table: call.request.readSession?.table ?? "" });
      createSession(call.request).then(
        (session) => {
          entry.status = "OK";
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
  proxy = await startProxy(port);
  return {
    endpoint: `http://127.0.0.1:${proxy.port}`,
    async close() {
      server.forceShutdown();
      await proxy?.close();
    },
  };
}
