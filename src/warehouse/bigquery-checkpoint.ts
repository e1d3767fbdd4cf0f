// Turns the Arrow record batches of a Storage Read stream into a checkpoint file with the same
// shape as the DuckDB adapter's: interval_time as timestamp[us, UTC], the other columns with
// their exact types, zstd, row groups of CHECKPOINT_ROW_GROUP_ROWS, the fingerprint in the
// key-value metadata.
//
// Memory stays at about one row group: batches are handed to polars (which reads Arrow IPC
// exactly: 64-bit integers and microsecond timestamps arrive as 64-bit values, never as JS
// numbers) a row group at a time and written as one parquet part each; the parts are then
// joined without decoding by concatParquetFiles, which also writes the key-value metadata polars
// cannot. The key is checked batch by batch on apache-arrow's raw BigInt64 values.
import { rm } from "node:fs/promises";
import { DataType, RecordBatchReader, TimeUnit, type Schema } from "apache-arrow";
import pl from "nodejs-polars";
import { KEY_COLUMN } from "../constants.ts";
import { JobError } from "../errors.ts";
import { concatParquetFiles } from "../parquet/concat.ts";
import type { ReadSink } from "./bigquery-read.ts";

export interface CheckpointBuilderOptions {
  /** `<dataset>.<table>`, for messages. */
  label: string;
  table: string;
  /** Column names the result must have, in order, the key first. */
  columns: readonly string[];
  rowGroupRows: number;
  /** Prefix of the part files; must contain ".tmp-" so a later run clears leftovers. */
  partPrefix: string;
}

export class CheckpointBuilder implements ReadSink {
  private readonly opts: CheckpointBuilderOptions;
  private schemaBytes: Buffer | undefined;
  private pending: Buffer[] = [];
  private pendingRows = 0;
  private carry: pl.DataFrame | undefined;
  private readonly parts: string[] = [];
  private rows = 0;
  private lastKey: bigint | undefined;
  private nullKeys = 0;
  private repeatedKeys = 0;
  private backwardKeys = 0;

  constructor(opts: CheckpointBuilderOptions) {
    this.opts = opts;
  }

  onSchema(serializedSchema: Uint8Array): void {
    const bytes = Buffer.from(serializedSchema);
    const reader = RecordBatchReader.from(bytes);
    reader.open();
    checkSchema(reader.schema, this.opts);
    this.schemaBytes = bytes;
  }

  async onBatch(serializedBatch: Uint8Array, declaredRows: number): Promise<number> {
    const schema = this.schemaBytes;
    if (!schema) throw new Error("record batch before the schema");
    const bytes = Buffer.from(serializedBatch);
    let decoded = 0;
    for (const batch of RecordBatchReader.from(Buffer.concat([schema, bytes]))) {
      decoded += batch.numRows;
      const key = batch.getChildAt(0);
      if (!key) throw new Error("record batch without columns");
      for (const data of key.data) {
        const values = data.values as BigInt64Array;
        for (let i = 0; i < data.length; i++) {
          if (!data.getValid(i)) {
            this.nullKeys++;
            continue;
          }
          const k = values[i] as bigint;
          if (this.lastKey !== undefined) {
            if (k === this.lastKey) this.repeatedKeys++;
            else if (k < this.lastKey) this.backwardKeys++;
          }
          this.lastKey = k;
        }
      }
    }
    if (declaredRows > 0 && decoded !== declaredRows) throw new Error(`a record batch holds ${decoded} rows but its response says ${declaredRows}`);
    this.pending.push(bytes);
    this.pendingRows += decoded;
    this.rows += decoded;
    while (this.pendingRows + (this.carry?.height ?? 0) >= this.opts.rowGroupRows) await this.writePart(this.opts.rowGroupRows);
    return decoded;
  }

  /** Joins pending batches (and the previous remainder) and writes the first `n` rows as a part. */
  private async writePart(n: number): Promise<void> {
    const schema = this.schemaBytes;
    if (!schema) throw new Error("no schema");
    let frame = this.pending.length > 0 ? pl.readIPCStream(Buffer.concat([schema, ...this.pending])) : undefined;
    if (this.carry) frame = frame ? pl.concat([this.carry, frame], { how: "vertical" }) : this.carry;
    this.pending = [];
    this.pendingRows = 0;
    frame ??= pl.readIPCStream(schema);
    const part = frame.height > n ? frame.slice(0, n) : frame;
    this.carry = frame.height > n ? frame.slice(n, frame.height - n) : undefined;
    const path = `${this.opts.partPrefix}.part${String(this.parts.length).padStart(5, "0")}`;
    this.parts.push(path);
    await part.lazy().sinkParquet(path, { compression: "zstd", rowGroupSize: this.opts.rowGroupRows, statistics: true, maintainOrder: true }).collect();
  }

  /**
   * Writes the checkpoint to `outPath` (a temporary name; the caller renames it into place)
   * after the key checks, the same ones the DuckDB adapter makes. Returns the row count.
   */
  async finish(outPath: string, keyValueMetadata: Record<string, string>): Promise<number> {
    const { label, table } = this.opts;
    if (this.nullKeys > 0) {
      throw new JobError(`${label} has ${this.nullKeys} rows with a NULL ${KEY_COLUMN}`, {
        reason: "null-key",
        fix: `remove those rows from ${table}; every row needs its ${KEY_COLUMN}`,
      });
    }
    if (this.repeatedKeys > 0) {
      throw new JobError(`${label} repeats ${this.repeatedKeys} ${KEY_COLUMN} values in the date range; a join on it would silently add rows`, {
        reason: "duplicate-keys",
        fix: `deduplicate ${table} on ${KEY_COLUMN} in the warehouse`,
      });
    }
    if (this.backwardKeys > 0) {
      throw new JobError(`${label}: the Storage Read API returned ${this.backwardKeys} rows out of ${KEY_COLUMN} order`, {
        reason: "rows-out-of-order",
        retryable: true,
        fix: "the read session must use a single stream to keep the query's ORDER BY; report this",
      });
    }
    while (this.pendingRows > 0 || this.carry || this.parts.length === 0) await this.writePart(this.opts.rowGroupRows);
    await concatParquetFiles(this.parts, outPath, { keyValueMetadata });
    return this.rows;
  }

  /** Removes the part files (after finish, or after a failure). */
  async discard(): Promise<void> {
    this.pending = [];
    this.carry = undefined;
    await Promise.all(this.parts.map((p) => rm(p, { force: true })));
  }
}

function checkSchema(schema: Schema, opts: CheckpointBuilderOptions): void {
  const names = schema.fields.map((f) => f.name);
  if (names.length !== opts.columns.length || names.some((n, i) => n !== opts.columns[i])) {
    throw new JobError(`${opts.label}: the query result has columns ${names.slice(0, 5).join(", ")}${names.length > 5 ? ", ..." : ""} (${names.length}), expected ${opts.columns.length} starting ${opts.columns.slice(0, 5).join(", ")}`, {
      reason: "bigquery-unexpected-schema",
      fix: "column names must be unique ignoring case in BigQuery; check the table's schema",
    });
  }
  const key = schema.fields[0]?.type;
  const isTimestampUtc = key !== undefined && DataType.isTimestamp(key) && key.unit === TimeUnit.MICROSECOND && key.timezone === "UTC";
  if (!isTimestampUtc) {
    throw new JobError(`${opts.label}.${KEY_COLUMN} arrives as ${String(schema.fields[0]?.type)}, expected Timestamp<MICROSECOND, UTC>`, {
      reason: "bigquery-unexpected-schema",
      fix: `${KEY_COLUMN} must be a BigQuery TIMESTAMP column`,
    });
  }
}
