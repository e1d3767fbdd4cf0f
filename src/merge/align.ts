// "Align" one checkpoint to the target's rows: a left join of the target keys with that one
// table, written as parquet with row groups on fixed row boundaries (every row group holds
// exactly `rowGroupRows` rows, the last one the remainder). Every aligned file then has the
// target's rows in the target's order, split the same way, so the files can be stitched side by
// side without decoding (src/parquet/stitch.ts).
//
// Memory: the one checkpoint, the key frame and the joined frame (bounded by the widest table,
// not by the merge). Row-group boundaries: `sinkParquet({ rowGroupSize })` wrote exact
// boundaries in every case measured (nodejs-polars 0.26: eager and lazy joins, 3 to 250
// columns, inputs of many chunks); the written footer is checked anyway and, should a polars
// version split differently, the frame is rewritten one row group per slice and the slices are
// concatenated without decoding (concat.ts).
import { mkdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import pl from "nodejs-polars";
import { KEY_COLUMN } from "../constants.ts";
import { JobError } from "../errors.ts";
import { concatParquetFiles } from "../parquet/concat.ts";
import { readFooterSummary } from "../parquet/footer.ts";
import { releaseNativeMemory } from "./native-memory.ts";

const KEY_DTYPE = pl.Datetime("us", "UTC");

export interface AlignOptions {
  /** Target interval_time values in µs since the epoch, strictly increasing. */
  keys: BigInt64Array;
  /** The checkpoint to align. */
  source: string;
  outPath: string;
  /** Rows per row group of the output (the last one holds the remainder). */
  rowGroupRows: number;
  /** Table name, for error messages. */
  table: string;
  /** Leave the key column out of the output (the target's aligned file keeps it). Default false. */
  omitKey?: boolean;
  /** zstd level; default 1. */
  compressionLevel?: number;
  /**
   * How exact row groups are obtained. "auto" (default): one `sinkParquet` with `rowGroupSize`,
   * checked, rewritten by slices if polars did not split exactly. "slices": always one file per
   * row group, concatenated byte for byte (slower; for a polars that cannot be trusted).
   */
  rowGroups?: "auto" | "slices";
  /**
   * Target rows joined at a time (a multiple of `rowGroupRows`); default all. Each slice reads
   * only the checkpoint rows in its key range (the scan skips other row groups by their key
   * statistics) and becomes its own part; the parts are concatenated without decoding. Memory
   * then follows the slice, not the table, so it stays flat however many rows there are.
   */
  sliceRows?: number;
}

export interface AlignResult {
  rows: number;
  /** Size of the written file. */
  bytes: number;
  /** Output columns (key included when kept). */
  columns: number;
  /** True when polars' row groups were not exact and the slice fallback was used. */
  rewritten: boolean;
}

/** The key column of a checkpoint as exact µs (checks its type). */
export function readKeys(file: string, table = path.basename(file, ".parquet")): BigInt64Array {
  const keys = pl.readParquet(file, { columns: [KEY_COLUMN] }).getColumn(KEY_COLUMN);
  checkKeyType(keys.dtype, table);
  return keys.cast(pl.Int64).toTypedArray() as BigInt64Array;
}

/**
 * Left-joins `data` onto the key frame, keeping the keys' order. A repeated key in `data` is an
 * error: joining it would add rows.
 */
export function joinOntoKeys(keyFrame: pl.DataFrame, data: pl.DataFrame, table: string): pl.DataFrame {
  checkKeyType(data.getColumn(KEY_COLUMN).dtype, table);
  try {
    return keyFrame.join(data, { on: KEY_COLUMN, how: "left", maintainOrder: "left", validate: "m:1" });
  } catch (err) {
    throw new JobError(`${table} repeats ${KEY_COLUMN} values; joining it would add rows`, {
      reason: "duplicate-keys",
      fix: `deduplicate ${table} on ${KEY_COLUMN}`,
      cause: err,
    });
  }
}

function checkKeyType(dtype: pl.DataType, table: string): void {
  if (dtype.toString() !== KEY_DTYPE.toString()) {
    throw new JobError(`checkpoint of ${table}: ${KEY_COLUMN} has type ${dtype.toString()}, expected ${KEY_DTYPE.toString()}`, {
      reason: "key-type",
      fix: `store ${KEY_COLUMN} in ${table} as TIMESTAMP`,
    });
  }
}

/** Row counts of the row groups when every one holds `per` rows, the last the remainder. */
export function rowGroupSizes(rows: number, per: number): number[] {
  const out: number[] = [];
  for (let start = 0; start < rows; start += per) out.push(Math.min(per, rows - start));
  return out;
}

function sameSizes(a: number[], b: number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function sink(frame: pl.DataFrame, file: string, rowGroupSize: number, level: number): Promise<void> {
  await frame
    .lazy()
    .sinkParquet(file, { compression: "zstd", compressionLevel: level, statistics: true, rowGroupSize })
    .collect();
}

/** `data` left-joined onto `keyFrame` (one row per key, in key order), without the key if asked. */
function alignFrame(keyFrame: pl.DataFrame, data: pl.DataFrame, source: string, table: string, omitKey: boolean | undefined): pl.DataFrame {
  if (!data.columns.includes(KEY_COLUMN)) {
    throw new JobError(`checkpoint of ${table} (${source}) has no ${KEY_COLUMN} column`, { reason: "key-missing" });
  }
  const joined = joinOntoKeys(keyFrame, data, table);
  if (joined.height !== keyFrame.height) {
    throw new Error(`alignCheckpoint(${table}): join produced ${joined.height} rows for ${keyFrame.height} keys`);
  }
  return omitKey ? joined.drop(KEY_COLUMN) : joined;
}

const KEY = pl.col(KEY_COLUMN);

/** A Datetime literal from exact microseconds (numbers are exact for µs timestamps until year 2255). */
export function keyLiteral(micros: bigint) {
  return pl.lit(Number(micros)).cast(pl.Int64).cast(KEY_DTYPE);
}

/** The sliced route of alignCheckpoint: one part per slice, then a byte-level concat into `tmpPath`. */
async function alignBySlices(opts: AlignOptions, tmpPath: string, level: number): Promise<number> {
  const { keys, source, outPath, rowGroupRows, table } = opts;
  const sliceRows = opts.sliceRows!;
  if (!Number.isSafeInteger(sliceRows) || sliceRows < rowGroupRows || sliceRows % rowGroupRows !== 0) {
    throw new Error(`alignCheckpoint(${table}): sliceRows ${sliceRows} must be a positive multiple of rowGroupRows ${rowGroupRows}`);
  }
  const partsDir = `${outPath}.slices`;
  await rm(partsDir, { recursive: true, force: true });
  await mkdir(partsDir, { recursive: true });
  let columns = 0;
  try {
    const parts: string[] = [];
    for (let start = 0, i = 0; start < keys.length; start += sliceRows, i += 1) {
      const end = Math.min(keys.length, start + sliceRows);
      const part = path.join(partsDir, `slice-${String(i).padStart(5, "0")}.parquet`);
      {
        const slice = keys.subarray(start, end);
        const keyFrame = pl.DataFrame([pl.Series(KEY_COLUMN, slice as unknown as number[]).cast(KEY_DTYPE)]);
        const data = await pl
          .scanParquet(source)
          .filter(KEY.gtEq(keyLiteral(slice[0]!)).and(KEY.ltEq(keyLiteral(slice[slice.length - 1]!))))
          .collect();
        const joined = alignFrame(keyFrame, data, source, table, opts.omitKey);
        columns = joined.width;
        await sink(joined, part, rowGroupRows, level);
      }
      const sizes = (await readFooterSummary(part)).rowGroups.map((g) => g.numRows);
      if (!sameSizes(sizes, rowGroupSizes(end - start, rowGroupRows))) {
        throw new Error(`alignCheckpoint(${table}): polars split a ${end - start}-row slice into row groups ${sizes.join(",")}`);
      }
      parts.push(part);
      await yieldToEventLoop();
      releaseNativeMemory();
    }
    await rm(tmpPath, { force: true });
    await concatParquetFiles(parts, tmpPath);
    return columns;
  } finally {
    await rm(partsDir, { recursive: true, force: true });
  }
}

export async function alignCheckpoint(opts: AlignOptions): Promise<AlignResult> {
  const { keys, source, outPath, rowGroupRows, table } = opts;
  if (!Number.isSafeInteger(rowGroupRows) || rowGroupRows < 1) throw new Error(`alignCheckpoint: rowGroupRows must be a positive integer, got ${rowGroupRows}`);
  for (let i = 1; i < keys.length; i++) {
    if ((keys[i] as bigint) <= (keys[i - 1] as bigint)) {
      throw new Error(`alignCheckpoint(${table}): target keys are not strictly increasing at row ${i}`);
    }
  }
  const level = opts.compressionLevel ?? 1;
  const tmpPath = `${outPath}.tmp`;
  await mkdir(path.dirname(outPath), { recursive: true });
  let rewritten = false;
  let columns = 0;
  try {
    if (opts.sliceRows !== undefined && opts.sliceRows < keys.length) {
      columns = await alignBySlices(opts, tmpPath, level);
    } else {
      // Scoped so the frames are unreachable once written.
      const keyFrame = pl.DataFrame([pl.Series(KEY_COLUMN, keys as unknown as number[]).cast(KEY_DTYPE)]);
      const data = pl.readParquet(source);
      const joined = alignFrame(keyFrame, data, source, table, opts.omitKey);
      columns = joined.width;
      const want = rowGroupSizes(keys.length, rowGroupRows);
      let exact = false;
      if (opts.rowGroups !== "slices") {
        await sink(joined, tmpPath, rowGroupRows, level);
        exact = sameSizes(want, (await readFooterSummary(tmpPath)).rowGroups.map((g) => g.numRows));
      }
      if (!exact) {
        // Not the boundaries asked for: one file per row group, then a byte-level concat.
        rewritten = true;
        const partsDir = `${outPath}.parts`;
        await rm(partsDir, { recursive: true, force: true });
        await mkdir(partsDir, { recursive: true });
        try {
          const parts: string[] = [];
          let start = 0;
          for (const [i, n] of want.entries()) {
            const part = path.join(partsDir, `part-${String(i).padStart(5, "0")}.parquet`);
            await sink(joined.slice(start, n), part, n, level);
            const sizes = (await readFooterSummary(part)).rowGroups.map((g) => g.numRows);
            if (!sameSizes(sizes, [n])) throw new Error(`alignCheckpoint(${table}): polars split a ${n}-row slice into row groups ${sizes.join(",")}`);
            parts.push(part);
            start += n;
          }
          await rm(tmpPath, { force: true });
          await concatParquetFiles(parts, tmpPath);
        } finally {
          await rm(partsDir, { recursive: true, force: true });
        }
      }
    }
    await rename(tmpPath, outPath);
  } catch (err) {
    await rm(tmpPath, { force: true }).catch(() => {});
    throw err;
  } finally {
    // Native memory is released only once the wrappers are collected.
    await yieldToEventLoop();
    releaseNativeMemory();
  }
  const { size } = await stat(outPath);
  return { rows: keys.length, bytes: size, columns, rewritten };
}
