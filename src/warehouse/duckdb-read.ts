// The embedded warehouse's reads, run inside pool workers: a table's rows for a key range (or
// the target's rows in order) as a polars DataFrame, with the same column types the BigQuery path
// produces from Arrow (integers as Int64, floats as Float64, strings, booleans, dates, and the key
// as Datetime(us, UTC)), so both backends hand identical frames to the aligner.
//
// DuckDB's result chunks arrive as typed arrays over native memory with a validity bitmap laid
// out as Arrow's (least significant bit first, 1 = valid). Fixed-width columns are copied chunk by
// chunk into one buffer per column, wrapped as Arrow data with apache-arrow and handed to polars
// as one Arrow IPC record batch; no value is boxed into a JS number on the way. Other types go
// through apache-arrow's builders from JS values (slower; features are almost all floats).
import { DuckDBInstance, type DuckDBConnection, type DuckDBResult } from "@duckdb/node-api";
import {
  Bool,
  DateDay,
  Field,
  Float64,
  Int64,
  RecordBatch,
  RecordBatchStreamWriter,
  Schema,
  Struct,
  TimeUnit,
  Timestamp,
  Utf8,
  makeData,
  vectorFromArray,
  type Data,
  type DataType,
} from "apache-arrow";
import { BufferRegion, FieldNode, Message, RecordBatch as RecordBatchHeader } from "apache-arrow/ipc/metadata/message";
import pl from "nodejs-polars";
import { KEY_COLUMN } from "../constants.ts";
import { columnKind, type FeatureKind } from "../discovery.ts";
import type { DuckDBSettings } from "../extract/task.ts";
import type { SliceBounds, TableQuery, ColumnMapping, ExtractedRows, WarehouseExtraction } from "./port.ts";
import { READ_BUFFERS_PER_WORKER_BYTES } from "../memory-plan.ts";
import { nextDay, quoteIdent, quoteString } from "../sql.ts";

/** How a warehouse column travels: its Arrow type and the SQL that reads it as such (discovery has refused every other type). */
export type ColumnKind = "key" | FeatureKind;

const ARROW_TYPES: Record<ColumnKind, () => DataType> = {
  key: () => new Timestamp(TimeUnit.MICROSECOND, "UTC"),
  float64: () => new Float64(),
  int64: () => new Int64(),
  bool: () => new Bool(),
  utf8: () => new Utf8(),
  date: () => new DateDay(),
};

const CAST: Record<Exclude<ColumnKind, "key">, string> = { float64: "DOUBLE", int64: "BIGINT", bool: "BOOLEAN", utf8: "VARCHAR", date: "DATE" };

export interface ReadColumn {
  /** Name in the frame (the output name). */
  name: string;
  kind: ColumnKind;
  /** SQL expression reading it. */
  sql: string;
}

/** The key, then each mapped column read as its kind. */
export function readColumns(query: Pick<TableQuery, "dataset" | "table" | "columns">): ReadColumn[] {
  const columns: ReadColumn[] = [{ name: KEY_COLUMN, kind: "key", sql: quoteIdent(KEY_COLUMN) }];
  for (const c of query.columns) {
    const kind = columnKind(c.type);
    if (!kind) throw new Error(`${query.dataset}.${query.table}.${c.source} has type ${c.type}, which discovery should have refused`);
    columns.push({ name: c.target, kind, sql: `CAST(${quoteIdent(c.source)} AS ${CAST[kind]}) AS ${quoteIdent(c.target)}` });
  }
  return columns;
}

/** The date range (and the target's row rule) as a DuckDB predicate on the key. */
function rangePredicate(query: TableQuery): string[] {
  const key = quoteIdent(KEY_COLUMN);
  return [
    `${key} >= CAST(${quoteString(query.dateFrom)} AS TIMESTAMPTZ)`,
    `${key} < CAST(${quoteString(nextDay(query.dateTo))} AS TIMESTAMPTZ)`,
    ...(query.notNullColumn ? [`${quoteIdent(query.notNullColumn)} IS NOT NULL`] : []),
  ];
}

/** A microsecond key as a DuckDB literal. */
function keyLiteral(micros: bigint): string {
  return `make_timestamptz(${micros.toString()}::BIGINT)`;
}

/**
 * The production query shape for a whole table, in key order: the target's rows (all of them,
 * ordered; ROW_LIMIT keeps the first N).
 */
export function orderedTableSql(query: TableQuery, columns: readonly ReadColumn[]): string {
  const key = quoteIdent(KEY_COLUMN);
  const limit = query.rowLimit !== undefined ? ` LIMIT ${query.rowLimit}` : "";
  return `SELECT ${columns.map((c) => c.sql).join(", ")} FROM ${quoteIdent(query.dataset)}.${quoteIdent(query.table)} WHERE ${rangePredicate(query).join(" AND ")} ORDER BY ${key}${limit}`;
}

/**
 * One slice's rows: the table's rows in the date range whose key is above `afterKey` and at most
 * `throughKey`, in no particular order (the join puts them in the target's). With ROW_LIMIT the
 * table is first cut to its first N rows by time, as the whole-table query would.
 */
export function sliceSql(query: TableQuery, columns: readonly ReadColumn[], slice: Pick<SliceBounds, "afterKey" | "throughKey">): string {
  const key = quoteIdent(KEY_COLUMN);
  const bounds = [
    ...(slice.afterKey !== undefined ? [`${key} > ${keyLiteral(slice.afterKey)}`] : []),
    ...(slice.throughKey !== undefined ? [`${key} <= ${keyLiteral(slice.throughKey)}`] : []),
  ];
  const from = `${quoteIdent(query.dataset)}.${quoteIdent(query.table)}`;
  const select = columns.map((c) => c.sql).join(", ");
  if (query.rowLimit === undefined) return `SELECT ${select} FROM ${from} WHERE ${[...rangePredicate(query), ...bounds].join(" AND ")}`;
  const limited = `SELECT * FROM ${from} WHERE ${rangePredicate(query).join(" AND ")} ORDER BY ${key} LIMIT ${query.rowLimit}`;
  return `SELECT ${select} FROM (${limited}) AS limited${bounds.length > 0 ? ` WHERE ${bounds.join(" AND ")}` : ""}`;
}

interface RawVector {
  items?: Float64Array | BigInt64Array | Int32Array;
  validity?: { data: BigUint64Array | null };
  getItem(i: number): unknown;
}

const POPCOUNT = Uint8Array.from({ length: 256 }, (_, b) => {
  let n = 0;
  for (let x = b; x > 0; x >>= 1) n += x & 1;
  return n;
});

/** Valid values among the first `rows` bits. */
function countValid(bits: Uint8Array, rows: number): number {
  let n = 0;
  const whole = rows >> 3;
  for (let i = 0; i < whole; i++) n += POPCOUNT[bits[i]!]!;
  for (let j = whole << 3; j < rows; j++) if (bits[j >> 3]! & (1 << (j & 7))) n++;
  return n;
}

/** Writes `n` validity bits at bit `at` of `dst`: from `src` (bit 0 first), or all valid when `src` is null. */
function writeBits(dst: Uint8Array, at: number, src: Uint8Array | null, n: number): void {
  if (at % 8 === 0) {
    const bytes = Math.ceil(n / 8);
    if (src) dst.set(src.subarray(0, bytes), at >> 3);
    else dst.fill(0xff, at >> 3, (at >> 3) + bytes);
    return;
  }
  for (let i = 0; i < n; i++) {
    const bit = src ? (src[i >> 3]! >> (i & 7)) & 1 : 1;
    const j = at + i;
    if (bit) dst[j >> 3]! |= 1 << (j & 7);
    else dst[j >> 3]! &= ~(1 << (j & 7));
  }
}

const pad8 = (n: number) => (n + 7) & ~7;
/** Bytes per value of the fixed-width kinds. */
const WIDTH: Partial<Record<ColumnKind, number>> = { key: 8, float64: 8, int64: 8, date: 4 };

/**
 * Memory a worker thread keeps from one read to the next: the columns' value and validity buffers
 * and the Arrow IPC buffer. On this project's machines a first touch of fresh memory costs a page
 * fault, and allocating every read's buffers anew took a tenth of the read; reused, it costs
 * nothing. At most REUSED_BYTES are kept (the memory plan counts them); a wider read allocates
 * the rest for itself.
 */
const REUSED_BYTES = READ_BUFFERS_PER_WORKER_BYTES;
const reused: { values: ArrayBuffer[]; valid: ArrayBuffer[]; ipc: ArrayBuffer | undefined } = { values: [], valid: [], ipc: undefined };

function reusable(list: ArrayBuffer[], i: number, bytes: number, keep: number): ArrayBuffer {
  const have = list[i];
  if (have && have.byteLength >= bytes) return have;
  const fresh = new ArrayBuffer(Math.ceil(bytes * 1.25));
  if (have) new Uint8Array(fresh).set(new Uint8Array(have, 0, keep));
  list[i] = fresh;
  return fresh;
}

function trimReused(): void {
  let total = reused.ipc?.byteLength ?? 0;
  if (total > REUSED_BYTES) reused.ipc = undefined;
  total = reused.ipc?.byteLength ?? 0;
  for (let i = 0; i < reused.values.length; i++) {
    total += (reused.values[i]?.byteLength ?? 0) + (reused.valid[i]?.byteLength ?? 0);
    if (total > REUSED_BYTES) {
      reused.values.length = i;
      reused.valid.length = i;
      break;
    }
  }
}

/** An Arrow IPC stream message: continuation, metadata length, the flatbuffer, padding to 8 (as apache-arrow frames it). */
function frame(message: Message): Uint8Array {
  const body = Message.encode(message);
  const aligned = pad8(body.byteLength + 8);
  const out = new Uint8Array(aligned);
  const view = new DataView(out.buffer);
  view.setInt32(0, -1, true);
  view.setInt32(4, aligned - 8, true);
  out.set(body, 8);
  return out;
}

/**
 * Reads a whole DuckDB result of fixed-width columns into a polars DataFrame: chunks are copied
 * into the reused column buffers, then once into one Arrow IPC stream (a schema message, one record
 * batch, end of stream) laid out here, which polars reads. (apache-arrow's own writer made three
 * more copies of every value.)
 */
async function fixedWidthFrame(result: DuckDBResult, columns: readonly ReadColumn[], expectedRows: number): Promise<pl.DataFrame> {
  let capacity = Math.max(2048, Math.ceil(expectedRows * 1.05));
  const values = columns.map((c, i) => reusable(reused.values, i, capacity * WIDTH[c.kind]!, 0));
  const valid = columns.map((_, i) => reusable(reused.valid, i, Math.ceil(capacity / 8), 0));
  let rows = 0;
  for (;;) {
    const chunk = await result.fetchChunk();
    if (!chunk || chunk.rowCount === 0) break;
    const n = chunk.rowCount;
    if (rows + n > capacity) {
      capacity = Math.max(rows + n, capacity * 2);
      columns.forEach((c, i) => {
        values[i] = reusable(reused.values, i, capacity * WIDTH[c.kind]!, rows * WIDTH[c.kind]!);
        valid[i] = reusable(reused.valid, i, Math.ceil(capacity / 8), Math.ceil(rows / 8));
      });
    }
    for (let c = 0; c < columns.length; c++) {
      const vector = chunk.getColumnVector(c) as unknown as RawVector;
      const items = vector.items!;
      const width = WIDTH[columns[c]!.kind]!;
      new Uint8Array(values[c]!, rows * width, n * width).set(new Uint8Array(items.buffer, items.byteOffset, n * width));
      const bits = vector.validity?.data;
      writeBits(new Uint8Array(valid[c]!), rows, bits ? new Uint8Array(bits.buffer, bits.byteOffset, Math.ceil(n / 8)) : null, n);
    }
    rows += n;
  }
  const fields = columns.map((c) => new Field(c.name, ARROW_TYPES[c.kind](), true));
  const nodes: FieldNode[] = [];
  const regions: BufferRegion[] = [];
  const copies: Array<{ from: ArrayBuffer; bytes: number; at: number }> = [];
  let body = 0;
  columns.forEach((c, i) => {
    const bits = new Uint8Array(valid[i]!, 0, Math.ceil(rows / 8));
    const nulls = rows - countValid(bits, rows);
    nodes.push(new FieldNode(rows, nulls));
    // Like apache-arrow: no validity buffer when nothing is null.
    const validBytes = nulls > 0 ? bits.length : 0;
    regions.push(new BufferRegion(body, pad8(validBytes)));
    if (validBytes > 0) copies.push({ from: valid[i]!, bytes: validBytes, at: body });
    body += pad8(validBytes);
    const dataBytes = rows * WIDTH[c.kind]!;
    regions.push(new BufferRegion(body, pad8(dataBytes)));
    copies.push({ from: values[i]!, bytes: dataBytes, at: body });
    body += pad8(dataBytes);
  });
  const schema = frame(Message.from(new Schema(fields)));
  const batch = frame(Message.from(new RecordBatchHeader(rows, nodes, regions, null), body));
  const total = schema.length + batch.length + body + 8;
  const ipc = new Uint8Array(reusable([reused.ipc ?? new ArrayBuffer(0)], 0, total, 0), 0, total);
  reused.ipc = ipc.buffer;
  ipc.set(schema, 0);
  ipc.set(batch, schema.length);
  const start = schema.length + batch.length;
  for (const copy of copies) ipc.set(new Uint8Array(copy.from, 0, copy.bytes), start + copy.at);
  new DataView(ipc.buffer).setInt32(total - 8, -1, true);
  new DataView(ipc.buffer).setInt32(total - 4, 0, true);
  // polars copies what it reads, so the buffers can serve the next read.
  const frameOut = pl.readIPCStream(Buffer.from(ipc.buffer, 0, total));
  trimReused();
  return frameOut;
}

/**
 * Reads a result that holds strings or booleans: those through apache-arrow's builders from JS
 * values, the fixed-width columns from their typed arrays (features are almost all numbers, so this
 * path is rare and not tuned).
 */
async function builtFrame(result: DuckDBResult, columns: readonly ReadColumn[]): Promise<pl.DataFrame> {
  const plain: unknown[][] = columns.map(() => []);
  const chunks: Array<Array<{ items: Uint8Array; bits: Uint8Array | null; n: number }>> = columns.map(() => []);
  let rows = 0;
  for (;;) {
    const chunk = await result.fetchChunk();
    if (!chunk || chunk.rowCount === 0) break;
    const n = chunk.rowCount;
    for (let c = 0; c < columns.length; c++) {
      const vector = chunk.getColumnVector(c) as unknown as RawVector;
      const width = WIDTH[columns[c]!.kind];
      if (width === undefined) {
        for (let i = 0; i < n; i++) plain[c]!.push(vector.getItem(i));
        continue;
      }
      const items = vector.items!;
      const bits = vector.validity?.data;
      chunks[c]!.push({
        items: new Uint8Array(items.buffer, items.byteOffset, n * width).slice(),
        bits: bits ? new Uint8Array(bits.buffer, bits.byteOffset, Math.ceil(n / 8)).slice() : null,
        n,
      });
    }
    rows += n;
  }
  const fields = columns.map((c) => new Field(c.name, ARROW_TYPES[c.kind](), true));
  const children = columns.map((c, i): Data => {
    const type = fields[i]!.type;
    const width = WIDTH[c.kind];
    if (width === undefined) {
      return vectorFromArray(
        plain[i]!.map((v) =>
          v === null || v === undefined ? null : c.kind === "bool" ? Boolean(v) : typeof v === "string" ? v : String(v as number | bigint | boolean),
        ),
        type as Utf8,
      ).data[0] as Data;
    }
    const bytes = new Uint8Array(rows * width);
    const valid = new Uint8Array(Math.ceil(rows / 8));
    let at = 0;
    for (const piece of chunks[i]!) {
      bytes.set(piece.items, at * width);
      writeBits(valid, at, piece.bits, piece.n);
      at += piece.n;
    }
    const nullCount = rows - countValid(valid, rows);
    const data = width === 4 ? new Int32Array(bytes.buffer) : c.kind === "float64" ? new Float64Array(bytes.buffer) : new BigInt64Array(bytes.buffer);
    return makeData({ type: type as Float64, length: rows, data: data as Float64Array, ...(nullCount > 0 ? { nullBitmap: valid } : {}), nullCount });
  });
  const writer = new RecordBatchStreamWriter();
  writer.write(new RecordBatch(new Schema(fields), makeData({ type: new Struct(fields), length: rows, nullCount: 0, children })));
  writer.finish();
  const ipc = writer.toUint8Array(true);
  return pl.readIPCStream(Buffer.from(ipc.buffer, ipc.byteOffset, ipc.byteLength));
}

/** Reads a whole DuckDB result into a polars DataFrame with the columns' kinds. */
export async function frameFromResult(result: DuckDBResult, columns: readonly ReadColumn[], expectedRows = 0): Promise<pl.DataFrame> {
  return columns.every((c) => WIDTH[c.kind] !== undefined) ? fixedWidthFrame(result, columns, expectedRows) : builtFrame(result, columns);
}

/**
 * One read-only DuckDB instance per worker thread, kept across tasks: opening the database loads
 * its catalog (700 tables, 17,000 columns), which costs more than reading a small table. Its
 * memory limit and threads come from the memory plan, not DuckDB's defaults (80 % of the host's
 * RAM, all its cores), which once let extraction alone peak at 10 GiB.
 */
const workerConnections = new Map<string, Promise<DuckDBConnection>>();

export function workerConnection(path: string, settings: DuckDBSettings): Promise<DuckDBConnection> {
  const key = `${path}\n${settings.memoryLimitBytes}\n${settings.threads}`;
  let connection = workerConnections.get(key);
  if (!connection) {
    connection = (async () => {
      const instance = await DuckDBInstance.create(path, {
        access_mode: "READ_ONLY",
        threads: String(settings.threads),
        memory_limit: `${Math.max(64, Math.floor(settings.memoryLimitBytes / 1024 ** 2))}MiB`,
      });
      const c = await instance.connect();
      await c.run("SET TimeZone = 'UTC'");
      return c;
    })();
    connection.catch(() => workerConnections.delete(key));
    workerConnections.set(key, connection);
  }
  return connection;
}

/** The target's rows in key order (or the first ROW_LIMIT of them). */
export async function readOrderedTable(connection: DuckDBConnection, query: TableQuery): Promise<pl.DataFrame> {
  const columns = readColumns(query);
  return frameFromResult(await connection.stream(orderedTableSql(query, columns)), columns);
}

/** One slice's rows, unordered. */
export async function readSlice(connection: DuckDBConnection, query: TableQuery, slice: SliceBounds): Promise<pl.DataFrame> {
  const columns = readColumns(query);
  return frameFromResult(await connection.stream(sliceSql(query, columns, slice)), columns, slice.endRow - slice.firstRow);
}

/** The embedded warehouse's extraction: reads through this worker thread's read-only instance of the file. */
export class DuckDBExtraction implements WarehouseExtraction {
  private readonly warehouse: string;
  private readonly settings: DuckDBSettings;

  constructor(warehouse: string, settings: DuckDBSettings) {
    this.warehouse = warehouse;
    this.settings = settings;
  }

  async readTarget(query: TableQuery): Promise<ExtractedRows> {
    return { frame: await readOrderedTable(await workerConnection(this.warehouse, this.settings), query), retries: 0 };
  }

  async readSlice(query: TableQuery, slice: SliceBounds): Promise<ExtractedRows> {
    return { frame: await readSlice(await workerConnection(this.warehouse, this.settings), query, slice), retries: 0 };
  }
}

export type { ColumnMapping };
