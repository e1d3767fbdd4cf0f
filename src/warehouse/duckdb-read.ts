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
import { Bool, DateDay, Field, Float64, Int64, RecordBatch, RecordBatchStreamWriter, Schema, Struct, TimeUnit, Timestamp, Utf8, makeData, vectorFromArray, type Data, type DataType } from "apache-arrow";
import pl from "nodejs-polars";
import { KEY_COLUMN } from "../constants.ts";
import { columnKind, type FeatureKind } from "../discovery.ts";
import type { DuckDBSettings, SliceBounds, TableQuery } from "../extract/task.ts";
import { nextDay, quoteIdent, quoteString } from "../sql.ts";
import type { ColumnMapping } from "./port.ts";

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

/** One growable column: values and validity bits, filled chunk by chunk. */
class ColumnBuffer {
  readonly column: ReadColumn;
  values: Float64Array | BigInt64Array | Int32Array | undefined;
  valid: Uint8Array | undefined;
  /** For the kinds built from JS values. */
  readonly plain: unknown[] = [];
  nulls = 0;

  constructor(column: ReadColumn) {
    this.column = column;
  }

  fixedWidth(): boolean {
    return this.column.kind === "key" || this.column.kind === "float64" || this.column.kind === "int64" || this.column.kind === "date";
  }

  ensure(capacity: number): void {
    if (!this.fixedWidth()) return;
    if (this.values && this.values.length >= capacity) return;
    const Kind = this.column.kind === "float64" ? Float64Array : this.column.kind === "date" ? Int32Array : BigInt64Array;
    const values = new Kind(capacity);
    if (this.values) values.set(this.values as never);
    const valid = new Uint8Array(Math.ceil(capacity / 8)).fill(0xff);
    if (this.valid) valid.set(this.valid);
    this.values = values;
    this.valid = valid;
  }
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

/** Copies `n` validity bits from `src` (bit 0 first) to `dst` at bit `at`. */
function copyBits(dst: Uint8Array, at: number, src: Uint8Array, n: number): void {
  if (at % 8 === 0) {
    dst.set(src.subarray(0, Math.ceil(n / 8)), at >> 3);
    return;
  }
  for (let i = 0; i < n; i++) {
    const bit = (src[i >> 3]! >> (i & 7)) & 1;
    const j = at + i;
    if (bit) dst[j >> 3]! |= 1 << (j & 7);
    else dst[j >> 3]! &= ~(1 << (j & 7));
  }
}

/** Reads a whole DuckDB result into a polars DataFrame with the columns' kinds. */
export async function frameFromResult(result: DuckDBResult, columns: readonly ReadColumn[], expectedRows = 0): Promise<pl.DataFrame> {
  const buffers = columns.map((c) => new ColumnBuffer(c));
  let capacity = Math.max(2048, expectedRows);
  for (const b of buffers) b.ensure(capacity);
  let rows = 0;
  for (;;) {
    const chunk = await result.fetchChunk();
    if (!chunk || chunk.rowCount === 0) break;
    const n = chunk.rowCount;
    if (rows + n > capacity) {
      capacity = Math.max(rows + n, capacity * 2);
      for (const b of buffers) b.ensure(capacity);
    }
    for (let c = 0; c < buffers.length; c++) {
      const buffer = buffers[c]!;
      const vector = chunk.getColumnVector(c) as unknown as RawVector;
      if (buffer.fixedWidth()) {
        (buffer.values as Float64Array).set(vector.items!.subarray(0, n) as Float64Array, rows);
        const validity = vector.validity?.data;
        if (validity) copyBits(buffer.valid!, rows, new Uint8Array(validity.buffer, validity.byteOffset, Math.ceil(n / 8)), n);
        else if (rows % 8 !== 0) copyBits(buffer.valid!, rows, new Uint8Array(Math.ceil(n / 8)).fill(0xff), n);
      } else {
        for (let i = 0; i < n; i++) buffer.plain.push(vector.getItem(i));
      }
    }
    rows += n;
  }
  const fields = columns.map((c) => new Field(c.name, ARROW_TYPES[c.kind](), true));
  const children: Data[] = buffers.map((b, i) => {
    const type = fields[i]!.type;
    if (!b.fixedWidth()) {
      const values = b.plain.map((v) => (v === null || v === undefined ? null : b.column.kind === "bool" ? Boolean(v) : String(v)));
      return vectorFromArray(values, type as Utf8).data[0] as Data;
    }
    const valid = b.valid!.subarray(0, Math.ceil(rows / 8));
    const nullCount = rows - countValid(valid, rows);
    return makeData({ type: type as Float64, length: rows, data: (b.values as Float64Array).subarray(0, rows), ...(nullCount > 0 ? { nullBitmap: valid } : {}), nullCount });
  });
  buffers.length = 0;
  const schema = new Schema(fields);
  const writer = new RecordBatchStreamWriter();
  writer.write(new RecordBatch(schema, makeData({ type: new Struct(fields), length: rows, nullCount: 0, children })));
  writer.finish();
  const ipc = writer.toUint8Array(true);
  return pl.readIPCStream(Buffer.from(ipc.buffer, ipc.byteOffset, ipc.byteLength));
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

export type { ColumnMapping };
