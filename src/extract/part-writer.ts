// Aligns one table's rows to the target's rows and writes them as a part: a parquet file whose row
// groups sit exactly on the output's boundaries, so its column chunks can be placed in the
// training file as they are (src/parquet/merged-footer.ts). Runs in pool workers.
//
// Memory: the table's rows for the slice, the key frame, the joined frame and the writer's
// buffers, all freed before the next task (polars' native memory goes only once V8 collects the
// wrappers, hence the collection after each part).
import { open, rename, rm } from "node:fs/promises";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { crc32c } from "@node-rs/crc32";
import pl from "nodejs-polars";
import { KEY_COLUMN } from "../constants.ts";
import { JobError } from "../errors.ts";
import { readRawFooter } from "../parquet/index.ts";
import { planPart } from "../parquet/index.ts";
import { releaseNativeMemory } from "./native-memory.ts";
import type { PartWriting, WrittenPart } from "./task.ts";

export const KEY_DTYPE = pl.Datetime("us", "UTC");
/** zstd level 1: within a few percent of the best ratio on float features at a fraction of the CPU. */
export const ZSTD_LEVEL = 1;

/** The key of a frame as read, checked: a UTC (or zone-less, read as UTC) microsecond timestamp with no nulls and no repeats. */
export function checkedKeyFrame(frame: pl.DataFrame, label: string): pl.DataFrame {
  const table = label.slice(label.lastIndexOf(".") + 1);
  const key = frame.getColumn(KEY_COLUMN);
  const dtype = (key.dtype as pl.DataType).toString();
  if (dtype !== KEY_DTYPE.toString() && dtype !== pl.Datetime("us").toString()) {
    throw new JobError(`${label}.${KEY_COLUMN} arrives as ${dtype}; expected a TIMESTAMP (microseconds, UTC)`, {
      reason: "key-type",
      fix: `store ${KEY_COLUMN} in ${table} as TIMESTAMP`,
    });
  }
  const nulls = key.nullCount();
  if (nulls > 0) {
    throw new JobError(`${label} has ${nulls} rows with a NULL ${KEY_COLUMN}`, {
      reason: "null-key",
      fix: `remove those rows from ${table}; every row needs its ${KEY_COLUMN}`,
    });
  }
  const repeated = frame.height - key.nUnique();
  if (repeated > 0) {
    throw new JobError(`${label} repeats ${repeated} ${KEY_COLUMN} values in the date range; a join on it would silently add rows`, {
      reason: "duplicate-keys",
      fix: `deduplicate ${table} on ${KEY_COLUMN} in the warehouse`,
    });
  }
  return dtype === KEY_DTYPE.toString() ? frame : frame.withColumns(pl.col(KEY_COLUMN).dt.replaceTimeZone("UTC"));
}

/** Row counts of the row groups of `rows` rows split every `per` rows (the last one the remainder). */
export function rowGroupSizes(rows: number, per: number): number[] {
  const out: number[] = [];
  for (let start = 0; start < rows; start += per) out.push(Math.min(per, rows - start));
  return out;
}

/** The keys as a one-column frame of the key's type. */
export function keyFrameOf(keys: BigInt64Array): pl.DataFrame {
  return pl.DataFrame([
    pl
      .Series(KEY_COLUMN, keys as unknown as number[])
      .cast(pl.Int64)
      .cast(KEY_DTYPE),
  ]);
}

/**
 * `frame` (key + columns, rows of the slice's key range, any order) left-joined onto `keys`, in
 * their order, without the key: one row per key, nulls where the table has no row.
 */
export function alignToKeys(frame: pl.DataFrame, keys: BigInt64Array, label: string): pl.DataFrame {
  const joined = keyFrameOf(keys).join(frame, { on: KEY_COLUMN, how: "left", maintainOrder: "left" });
  if (joined.height !== keys.length) throw new Error(`${label}: the join gave ${joined.height} rows for ${keys.length} keys`);
  return joined.drop(KEY_COLUMN);
}

async function crcOfRange(path: string, start: number, end: number): Promise<number> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.allocUnsafe(Math.min(8 << 20, Math.max(1, end - start)));
    let crc = 0;
    for (let at = start; at < end;) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, end - at), at);
      if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at ${at}`);
      crc = crc32c(buf.subarray(0, bytesRead), crc);
      at += bytesRead;
    }
    return crc;
  } finally {
    await fh.close();
  }
}

/**
 * Writes `frame` as a part at `outPath` (through a temporary name), with row groups of
 * `writing.rowsPerGroup` rows, checks that polars split it exactly so, and returns where its column
 * chunks and footer lie with their CRC32Cs.
 */
export async function writePart(frame: pl.DataFrame, outPath: string, writing: PartWriting, label: string): Promise<WrittenPart> {
  const tmp = `${outPath}.tmp-${process.pid}`;
  const rows = frame.height;
  try {
    const statistics = writing.minMax ? true : { min: false, max: false, nullCount: true, distinctCount: false };
    await frame
      .lazy()
      .sinkParquet(tmp, { compression: "zstd", compressionLevel: ZSTD_LEVEL, statistics, rowGroupSize: writing.rowsPerGroup, maintainOrder: true })
      .collect();
    const raw = await readRawFooter(tmp);
    const plan = planPart(raw.thrift, label);
    const want = rowGroupSizes(rows, writing.rowsPerGroup);
    if (plan.rowGroupRows.length !== want.length || plan.rowGroupRows.some((n, i) => n !== want[i])) {
      throw new JobError(`${label}: polars wrote row groups of ${plan.rowGroupRows.join(",")} rows where ${want.join(",")} were asked for`, {
        reason: "row-groups",
        fix: "the installed nodejs-polars splits row groups differently; use the version in package-lock.json",
      });
    }
    const part: WrittenPart = {
      path: outPath,
      fileBytes: raw.fileBytes,
      dataStart: plan.dataStart,
      dataEnd: plan.dataEnd,
      dataCrc32c: await crcOfRange(tmp, plan.dataStart, plan.dataEnd),
      footerStart: raw.footerStart,
      footerEnd: raw.footerStart + raw.thrift.length,
      footerCrc32c: crc32c(raw.thrift),
      rows,
      rowGroups: plan.rowGroupRows.length,
    };
    await rename(tmp, outPath);
    return part;
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  } finally {
    await yieldToEventLoop();
    releaseNativeMemory();
  }
}
