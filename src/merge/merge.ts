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
import { ColumnAppender } from "../parquet/append.ts";
import { Piscina } from "piscina";
import { alignCheckpoint, joinOntoKeys, keyLiteral, readKeys, type AlignResult } from "./align.ts";
import type { AlignFailure, AlignTask } from "./align-worker.ts";
import { planAlignment, planRowRanges, type MergePlan } from "./plan.ts";

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
  onPlan?: (plan: MergePlan, rows: number, strategy: "append" | "ranges") => void;
  /** Steps done: tables aligned (stitch) or row ranges merged (ranges). */
  onProgress?: (done: number, total: number) => void;
  /**
   * Worker threads aligning tables at once (stitch route); default 1, in this thread. Tables run
   * together only while their estimated working sets fit the budget together.
   */
  workers?: number;
  /**
   * Cap on the bytes of aligned tables waiting to be appended (append route, pool): no new table
   * starts while they exceed it. For scratch kept in memory (scratch.ts); default: only the
   * count is capped (MAX_WAITING_TABLES).
   */
  maxWaitingBytes?: number;
}

export type MergeStrategy = "auto" | "append" | "ranges";



export interface MergeResult {
  strategy: "append" | "ranges";
  /** Checkpoint files the merge actually joined, the target included. */
  tablesMerged: number;
  rows: number;
  columns: number;
  rowGroups: number;
  bytes: number;
  plan: MergePlan;
  /** Wall seconds of the two phases (stitch route: aligning, stitching; ranges: joining, concatenating). */
  phaseSeconds: { prepare: number; assemble: number };
  /** Threads that aligned tables (stitch route; 1 = this thread). */
  workers: number;
}

const KEY_DTYPE = pl.Datetime("us", "UTC");


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
  let widths: number[] | undefined;
  if (strategy !== "ranges") {
    widths = [];
    for (const t of [{ path: input.target }, ...input.features]) widths.push((await readFooterSummary(t.path)).columnNames.length);
  }
  // Aligning in slices keeps any table within the budget, so "auto" always appends; the row
  // ranges remain as an explicit choice (and a reference in the tests).
  if (strategy === "auto") strategy = "append";
  input.onPlan?.(plan, keys.length, strategy);
  return strategy === "append" ? mergeByAppending(input, keys, plan, widths!) : mergeByRanges(input, keys, plan);
}

/**
 * Aligns each checkpoint to the target rows on its own (memory: the tables being aligned), with
 * row groups on the plan's row boundaries, and appends each aligned table's encoded column chunks
 * to the output as soon as it and the tables before it are ready (parquet/append.ts). Nothing is
 * decoded twice, and an aligned table is deleted once appended, so the disk (or Cloud Run's
 * in-memory filesystem) never holds a second copy of the output.
 */
async function mergeByAppending(input: MergeInput, keys: BigInt64Array, plan: MergePlan, widths: number[]): Promise<MergeResult> {
  await rm(input.partsDir, { recursive: true, force: true });
  await mkdir(input.partsDir, { recursive: true });
  const tables = [{ table: "target", path: input.target }, ...input.features];
  const aligned = tables.map((_, i) => path.join(input.partsDir, `aligned-${String(i).padStart(5, "0")}.parquet`));
  const tasks: Omit<AlignTask, "keys">[] = tables.map((t, i) => ({ source: t.path, outPath: aligned[i]!, rowGroupRows: plan.rowsPerRange, table: t.table, omitKey: i > 0 }));
  const { workers, sliceRows } = planAlignment(keys.length, widths, input.budgetBytes, input.workers ?? 1, plan.rowsPerRange);
  tasks.forEach((t, i) => (t.sliceRows = sliceRows[i]));
  const started = performance.now();
  const appender = await ColumnAppender.create(input.outPath, { keyValueMetadata: input.keyValueMetadata });
  try {
    // Tables are appended in column order, so the output's bytes do not depend on which worker
    // finished first.
    const ready = new Map<number, number>();
    let waitingBytes = 0;
    let nextToAppend = 0;
    let appending: Promise<void> = Promise.resolve();
    const onAligned = (i: number, bytes: number): Promise<void> => {
      ready.set(i, bytes);
      waitingBytes += bytes;
      appending = appending.then(async () => {
        while (ready.has(nextToAppend)) {
          const k = nextToAppend;
          await appender.append(aligned[k]!, k);
          await rm(aligned[k]!, { force: true });
          waitingBytes -= ready.get(k)!;
          ready.delete(k);
          nextToAppend += 1;
          input.onProgress?.(nextToAppend, tables.length);
        }
      });
      return appending;
    };
    if (workers === 1) {
      for (const [i, task] of tasks.entries()) {
        if (input.signal?.aborted) throw input.signal.reason;
        const r = await alignCheckpoint({ ...task, keys });
        await onAligned(i, r.bytes);
      }
    } else {
      const full = () => ready.size >= MAX_WAITING_TABLES || (input.maxWaitingBytes !== undefined && waitingBytes >= input.maxWaitingBytes);
      await alignOnPool(tasks, keys, workers, input, onAligned, full);
    }
    await appending;
    const aligning = performance.now();
    const out = await appender.finish();
    const phaseSeconds = { prepare: (aligning - started) / 1000, assemble: (performance.now() - aligning) / 1000 };
    return { strategy: "append", tablesMerged: tables.length, rows: out.rows, columns: out.columns, rowGroups: out.rowGroups, bytes: out.bytes, plan, phaseSeconds, workers };
  } catch (err) {
    await appender.abort();
    throw err;
  } finally {
    // Also on failure: the directory may be in memory (scratch.ts).
    await rm(input.partsDir, { recursive: true, force: true });
  }
}

const ALIGN_WORKER = new URL("./align-worker.ts", import.meta.url).href;
/** Aligned tables waiting for an earlier one before being appended; beyond this no new table starts. */
const MAX_WAITING_TABLES = 32;

/**
 * Aligns tables on `workers` threads, in order (each within its share of the budget, see
 * planAlignment).
 * `onAligned(i, bytes)` runs as each table is done; it is awaited before the next table starts
 * only when `full()` says too many tables or bytes are queued behind a slow one.
 */
async function alignOnPool(
  tasks: Omit<AlignTask, "keys">[],
  keys: BigInt64Array,
  workers: number,
  input: MergeInput,
  onAligned: (i: number, bytes: number) => Promise<void>,
  full: () => boolean,
): Promise<void> {
  const shared = new BigInt64Array(new SharedArrayBuffer(keys.byteLength));
  shared.set(keys);
  const pool = new Piscina<AlignTask, AlignResult | AlignFailure>({ filename: ALIGN_WORKER, maxThreads: workers, minThreads: workers, idleTimeout: 1_000 });
  let running = 0;
  let next = 0;
  let done = 0;
  let failure: unknown;
  try {
    await new Promise<void>((resolve) => {
      const pump = () => {
        if (failure !== undefined || input.signal?.aborted) {
          failure ??= input.signal?.reason;
          if (running === 0) resolve();
          return;
        }
        if (done === tasks.length) return resolve();
        while (
          next < tasks.length &&
          running < workers &&
          !full()
        ) {
          const i = next++;
          running += 1;
          pool
            .run({ ...tasks[i]!, keys: shared }, { signal: input.signal })
            .then((r) => {
              if ("failed" in r) throw new JobError(r.message, { reason: r.reason, fix: r.fix });
              return r.bytes;
            })
            .finally(() => {
              running -= 1;
            })
            .then(async (bytes) => {
              done += 1;
              const appended = onAligned(i, bytes);
              appended.catch((err: unknown) => (failure ??= err));
              // Wait for the append only when the queue behind a slow table is long.
              if (full()) await appended;
            })
            .catch((err: unknown) => (failure ??= err))
            .finally(pump);
        }
      };
      pump();
    });
  } finally {
    await pool.destroy();
  }
  if (failure !== undefined) throw failure;
}

/** Joins every checkpoint's slice for one budget-sized row range at a time. */
async function mergeByRanges(input: MergeInput, keys: BigInt64Array, plan: MergePlan): Promise<MergeResult> {
  await rm(input.partsDir, { recursive: true, force: true });
  await mkdir(input.partsDir, { recursive: true });

  const started = performance.now();
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
  const joining = performance.now();
  const out = await concatParquetFiles(parts, input.outPath, { keyValueMetadata: input.keyValueMetadata });
  await rm(input.partsDir, { recursive: true, force: true });
  const phaseSeconds = { prepare: (joining - started) / 1000, assemble: (performance.now() - joining) / 1000 };
  return { strategy: "ranges", tablesMerged: tables.length, rows: out.rows, columns: input.columns, rowGroups: out.rowGroups, bytes: out.bytes, plan, phaseSeconds, workers: 1 };
}
