// The memory plan, made before Stage 1 from the discovered tables: how much the checkpoints,
// the output and the merge will need, and whether that fits the container. On Cloud Run the
// built-in filesystem is in memory, so files under WORK_DIR count against the memory limit too.
// A plan that cannot fit stops the job at once, with the numbers and the fixes, instead of the
// container being killed an hour later.
import { planRowRanges } from "./merge/plan.ts";
import { formatBytes } from "./units.ts";

/**
 * Compressed parquet bytes per float64 value, measured on the 20,000-row sample (zstd):
 * checkpoints 1.5 GB for 2.73 GB of values (0.55), the merged file 1.73 GiB for 2.70 GB (0.64).
 */
export const STORED_BYTES_PER_VALUE = 8 * 0.65;
/** Node, polars and their pools, and what the allocator keeps: 100-300 MiB measured, doubled. */
export const RUNTIME_BYTES = 512 * 1024 ** 2;

export interface MemoryPlanInput {
  /** Rows and columns (key included) of every table to extract, the target among them. */
  tables: { rows: number | undefined; columns: number }[];
  targetRows: number | undefined;
  outputColumns: number;
  rowLimit: number | undefined;
  budgetBytes: number;
  memoryLimitBytes: number;
  memoryLimitSource: string;
  workDir: string;
  workDirInMemory: boolean;
  workDirFreeBytes: number | undefined;
}

/**
 * Aligned tables waiting to be appended to the output (merge.ts lets at most 32 of 668 queue
 * behind a slow one, about 5 % of the output), counted twice for safety.
 */
export const APPEND_QUEUE_SHARE = 0.1;

export interface MemoryPlan {
  checkpointBytes: number;
  outputBytes: number;
  /** Checkpoints, the merge's parts and the output exist together at the end of the merge. */
  diskBytes: number;
  mergeWorkingBytes: number;
  memoryNeededBytes: number;
  fits: boolean;
  problems: string[];
}

export function planMemory(input: MemoryPlanInput): MemoryPlan {
  const cap = (rows: number | undefined) => Math.min(rows ?? 0, input.rowLimit ?? Number.POSITIVE_INFINITY);
  const checkpointBytes = input.tables.reduce((n, t) => n + cap(t.rows) * t.columns * STORED_BYTES_PER_VALUE, 0);
  const targetRows = cap(input.targetRows);
  const outputBytes = targetRows * input.outputColumns * STORED_BYTES_PER_VALUE;
  // The merge appends each aligned table to the output and deletes it: one copy of the output.
  const outputCopies = 1 + APPEND_QUEUE_SHARE;
  const diskBytes = checkpointBytes + outputCopies * outputBytes;
  const mergeWorkingBytes = planRowRanges(targetRows, input.outputColumns, input.budgetBytes).estimatedPeakBytes;
  const memoryNeededBytes = RUNTIME_BYTES + mergeWorkingBytes + (input.workDirInMemory ? diskBytes : 0);
  const problems: string[] = [];
  const fixes = "mount a volume for WORK_DIR (Cloud Storage FUSE or NFS) so its files stop counting as memory, raise the job's memory (--memory), or lower MEMORY_BUDGET";
  if (memoryNeededBytes > input.memoryLimitBytes) {
    const files = input.workDirInMemory
      ? ` + files in WORK_DIR ${input.workDir}, which is in memory (tmpfs): checkpoints ~${formatBytes(checkpointBytes)}, output ~${formatBytes(outputCopies * outputBytes)} with the merge's parts`
      : "";
    problems.push(
      `memory plan does not fit: runtime ~${formatBytes(RUNTIME_BYTES)} + merge working set ~${formatBytes(mergeWorkingBytes)} (MEMORY_BUDGET ${formatBytes(input.budgetBytes)})${files} = ~${formatBytes(memoryNeededBytes)}, but the limit is ${formatBytes(input.memoryLimitBytes)} (${input.memoryLimitSource}). Fix: ${fixes}`,
    );
  }
  if (!input.workDirInMemory && input.workDirFreeBytes !== undefined && diskBytes > input.workDirFreeBytes) {
    problems.push(
      `WORK_DIR ${input.workDir} has ${formatBytes(input.workDirFreeBytes)} free but the run needs ~${formatBytes(diskBytes)} (checkpoints ~${formatBytes(checkpointBytes)}, output and merge parts ~${formatBytes(outputCopies * outputBytes)}). Fix: point WORK_DIR at a larger volume`,
    );
  }
  return { checkpointBytes, outputBytes, diskBytes, mergeWorkingBytes, memoryNeededBytes, fits: problems.length === 0, problems };
}
