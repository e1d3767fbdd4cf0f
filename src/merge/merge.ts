// Stage 2's engine: left-join every checkpoint onto the target's rows, one row range at a time,
// so at most one range of the output (sized from the memory budget) is in memory. Each range is
// written as a parquet part; the parts' row groups are then copied into one file without being
// decoded again.
import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import pl from "nodejs-polars";
import { KEY_COLUMN } from "../constants.ts";
import { JobError } from "../errors.ts";
import { concatParquetFiles } from "../parquet/concat.ts";
import { releaseNativeMemory } from "./native-memory.ts";
import { readFooterSummary } from "../parquet/footer.ts";
import { stitchParquetColumns } from "../parquet/stitch.ts";
import { alignCheckpoint, joinOntoKeys, readKeys } from "./align.ts";
import { BYTES_PER_VALUE, planRowRanges, type MergePlan } from "./plan.ts";

export interface MergeInput {
  /** The target checkpoint: its keys define the rows, in order. */
  target: string;
  /** Feature checkpoints in output column order. */
  features: { table: string; path: string }[];
  /** Columns of the output, for the range plan. */
  columns: number;
  budgetBytes: number;
  partsDir: string;
  outPath: string;
  keyValueMetadata?: Record<string, string>;
  signal?: AbortSignal;
  /** "auto" (default) aligns and stitches when the widest table fits the budget, else ranges. */
  strategy?: MergeStrategy;
  onPlan?: (plan: MergePlan, rows: number, strategy: "stitch" | "ranges") => void;
  /** Steps done: tables aligned (stitch) or row ranges merged (ranges). */
  onProgress?: (done: number, total: number) => void;
}

export type MergeStrategy = "auto" | "stitch" | "ranges";

/**
 * Resident bytes per byte of one aligned table: the checkpoint as read, the joined frame, the
 * writer's buffers. The align route holds one table at a time.
 */
export const ALIGN_WORKING_SET_FACTOR = 4;

export interface MergeResult {
  strategy: "stitch" | "ranges";
  /** Checkpoint files the merge actually joined, the target included. */
  tablesMerged: number;
  rows: number;
  columns: number;
  rowGroups: number;
  bytes: number;
  plan: MergePlan;
}

const KEY_DTYPE = pl.Datetime("us", "UTC");

/** A Datetime literal from exact microseconds (numbers are exact for µs timestamps until year 2255). */
function keyLiteral(micros: bigint) {
  return pl.lit(Number(micros)).cast(pl.Int64).cast(KEY_DTYPE);
}

async function alignedSlice(file: string, table: string, keys: pl.DataFrame, lo: bigint, hi: bigint, keepKey: boolean): Promise<pl.DataFrame> {
  const key = pl.col(KEY_COLUMN);
  const slice = await pl
    .scanParquet(file)
    .filter(key.gtEq(keyLiteral(lo)).and(key.ltEq(keyLiteral(hi))))
    .collect();
  const joined = joinOntoKeys(keys, slice, table);
  return keepKey ? joined : joined.drop(KEY_COLUMN);
}

export async function mergeCheckpoints(input: MergeInput): Promise<MergeResult> {
  const keys = readKeys(input.target, "target");
  const plan = planRowRanges(keys.length, input.columns, input.budgetBytes);
  let strategy = input.strategy ?? "auto";
  if (strategy === "auto") {
    let widest = 0;
    for (const t of [{ path: input.target }, ...input.features]) widest = Math.max(widest, (await readFooterSummary(t.path)).columnNames.length);
    strategy = keys.length * widest * BYTES_PER_VALUE * ALIGN_WORKING_SET_FACTOR <= input.budgetBytes ? "stitch" : "ranges";
  }
  input.onPlan?.(plan, keys.length, strategy);
  return strategy === "stitch" ? mergeByStitching(input, keys, plan) : mergeByRanges(input, keys, plan);
}

/**
 * Aligns each checkpoint to the target rows on its own (memory: one table), with row groups on
 * the plan's row boundaries, then copies row group i of every aligned file side by side into
 * one file. Nothing is decoded twice. Measured at full width (668 files, 19,800 rows):
 * 34.5 s and 461 MiB against 127.8 s and 1.48 GiB by row ranges, and 35.9 s for the floor.
 */
async function mergeByStitching(input: MergeInput, keys: BigInt64Array, plan: MergePlan): Promise<MergeResult> {
  await rm(input.partsDir, { recursive: true, force: true });
  await mkdir(input.partsDir, { recursive: true });
  const tables = [{ table: "target", path: input.target }, ...input.features];
  const aligned: string[] = [];
  for (const [i, t] of tables.entries()) {
    if (input.signal?.aborted) throw input.signal.reason;
    const out = path.join(input.partsDir, `aligned-${String(i).padStart(5, "0")}.parquet`);
    await alignCheckpoint({ keys, source: t.path, outPath: out, rowGroupRows: plan.rowsPerRange, table: t.table, omitKey: i > 0 });
    aligned.push(out);
    input.onProgress?.(i + 1, tables.length);
  }
  const out = await stitchParquetColumns(aligned, input.outPath, { keyValueMetadata: input.keyValueMetadata });
  await rm(input.partsDir, { recursive: true, force: true });
  return { strategy: "stitch", tablesMerged: tables.length, rows: out.rows, columns: out.columns, rowGroups: out.rowGroups, bytes: out.bytes, plan };
}

/** Joins every checkpoint's slice for one budget-sized row range at a time. */
async function mergeByRanges(input: MergeInput, keys: BigInt64Array, plan: MergePlan): Promise<MergeResult> {
  await rm(input.partsDir, { recursive: true, force: true });
  await mkdir(input.partsDir, { recursive: true });

  // Above this the merge collects garbage fully after each table (see native-memory.ts).
  const ceilingBytes = process.memoryUsage.rss() + plan.estimatedPeakBytes;
  const parts: string[] = [];
  const tables = [{ table: "target", path: input.target }, ...input.features];
  for (const range of plan.ranges) {
    if (input.signal?.aborted) throw input.signal.reason;
    const keyFrame = pl.DataFrame([pl.Series(KEY_COLUMN, keys.subarray(range.start, range.end) as unknown as number[]).cast(KEY_DTYPE)]);
    const lo = keys[range.start]!;
    const hi = keys[range.end - 1]!;
    const pieces: pl.DataFrame[] = [];
    for (const [i, t] of tables.entries()) {
      pieces.push(await alignedSlice(t.path, t.table, keyFrame, lo, hi, i === 0));
      // Native memory held by polars objects is released only when the event loop turns
      // and V8 has collected their wrappers.
      await yieldToEventLoop();
      releaseNativeMemory({ ceilingBytes });
    }
    let frame: pl.DataFrame | undefined = pl.concat(pieces, { how: "horizontal" });
    pieces.length = 0;
    await yieldToEventLoop();
    releaseNativeMemory({ ceilingBytes });
    const part = path.join(input.partsDir, `part-${String(range.index).padStart(5, "0")}.parquet`);
    await frame
      .lazy()
      .sinkParquet(part, { compression: "zstd", compressionLevel: 1, statistics: true, rowGroupSize: range.end - range.start })
      .collect();
    frame = undefined;
    parts.push(part);
    await yieldToEventLoop();
    releaseNativeMemory({ ceilingBytes });
    input.onProgress?.(range.index + 1, plan.ranges.length);
  }

  if (parts.length === 0) {
    throw new JobError("the target table has no rows to merge", { reason: "target-empty" });
  }
  const out = await concatParquetFiles(parts, input.outPath, { keyValueMetadata: input.keyValueMetadata });
  await rm(input.partsDir, { recursive: true, force: true });
  return { strategy: "ranges", tablesMerged: tables.length, rows: out.rows, columns: input.columns, rowGroups: out.rowGroups, bytes: out.bytes, plan };
}
