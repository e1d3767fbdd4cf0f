// The memory plan, made before anything is extracted: what the job holds at its peak and whether
// that fits the container. The training file itself is never in the container (it is assembled in
// the bucket), so what counts is the work in flight: the tables being aligned and their part files
// waiting for upload (both within MEMORY_BUDGET), each worker's DuckDB, the runtime, the footers
// the assembly holds and, with Cloud Storage, the upload buffers. On Cloud Run the built-in
// filesystem is in memory, so part files in WORK_DIR count as memory; they are inside the budget.
// A plan that cannot fit stops the job at once with the numbers and the fix. MEMORY_BUDGET's
// default is decided here too: this file is the one to read for what the job may hold.
import { FOOTER_LIMIT_BYTES } from "./parts/plan.ts";
import { formatBytes } from "./units.ts";

/**
 * MEMORY_BUDGET's default: a quarter of the container's memory, leaving room for the Node heap,
 * the worker pool and, on Cloud Run, the in-memory filesystem holding the part files.
 */
export function defaultMemoryBudget(limitBytes: number): number {
  return Math.max(256 * 1024 ** 2, Math.floor(limitBytes / 4));
}

/**
 * DuckDB's pool for each table-signature connection (table versions, before extraction starts):
 * a signature scans every column of a table, and the widest at full shape (232 columns x
 * 177,748 rows) failed in a shared 128 MiB pool with two scans at once.
 */
export const SIGNATURE_MEMORY_BYTES = 256 * 1024 ** 2;

/** Node, the worker threads' isolates, polars' thread pools, what the allocator keeps: 100-300 MiB measured, doubled. */
export const RUNTIME_BYTES = 512 * 1024 ** 2;
/** The part footers held for the assembly, the merged footer and the footer object: each under the footer limit. */
export const ASSEMBLY_BYTES = 3 * FOOTER_LIMIT_BYTES;
/** Resumable uploads buffer one chunk each (src/bucket/gcs.ts DEFAULT_CHUNK_BYTES) x uploads at once. */
export const GCS_UPLOAD_BUFFER_BYTES = 4 * 32 * 1024 ** 2;

/**
 * What a worker keeps between DuckDB reads: the column and Arrow buffers it reuses
 * (src/warehouse/duckdb-read.ts), so the memory of each read is not touched afresh.
 */
export const READ_BUFFERS_PER_WORKER_BYTES = 256 * 1024 ** 2;

/** Each worker's DuckDB instance: enough for the column segments of a wide table's scan, never DuckDB's default of 80 % of RAM. */
export function duckdbMemoryPerWorker(memoryLimitBytes: number): number {
  return Math.min(512 * 1024 ** 2, Math.max(128 * 1024 ** 2, Math.floor(memoryLimitBytes / 32)));
}

export interface MemoryPlanInput {
  backend: "local" | "gcp";
  workers: number;
  budgetBytes: number;
  memoryLimitBytes: number;
  memoryLimitSource: string;
  /** What one row group of the widest table costs to align (a slice holds one at least). */
  widestRowGroupBytes: number;
  workDir: string;
  workDirInMemory: boolean;
  workDirFreeBytes: number | undefined;
}

export interface MemoryPlan {
  runtimeBytes: number;
  /** Tables in flight and their part files, bounded by MEMORY_BUDGET. */
  extractionBytes: number;
  warehouseBytes: number;
  duckdbBytesPerWorker: number;
  assemblyBytes: number;
  uploadBytes: number;
  memoryNeededBytes: number;
  fits: boolean;
  problems: string[];
  warnings: string[];
}

export function planMemory(input: MemoryPlanInput): MemoryPlan {
  const duckdbBytesPerWorker = input.backend === "local" ? duckdbMemoryPerWorker(input.memoryLimitBytes) : 0;
  const warehouseBytes = input.backend === "local" ? (duckdbBytesPerWorker + READ_BUFFERS_PER_WORKER_BYTES) * input.workers : 0;
  const uploadBytes = input.backend === "gcp" ? GCS_UPLOAD_BUFFER_BYTES : 0;
  const extractionBytes = Math.max(input.budgetBytes, input.widestRowGroupBytes);
  const memoryNeededBytes = RUNTIME_BYTES + extractionBytes + warehouseBytes + ASSEMBLY_BYTES + uploadBytes;
  const problems: string[] = [];
  const warnings: string[] = [];
  if (memoryNeededBytes > input.memoryLimitBytes) {
    const room = input.memoryLimitBytes - (memoryNeededBytes - extractionBytes);
    problems.push(
      `memory plan does not fit: runtime ~${formatBytes(RUNTIME_BYTES)} + tables in flight ~${formatBytes(extractionBytes)} (MEMORY_BUDGET ${formatBytes(input.budgetBytes)})` +
        `${warehouseBytes > 0 ? ` + DuckDB and read buffers ${input.workers} x ${formatBytes(duckdbBytesPerWorker + READ_BUFFERS_PER_WORKER_BYTES)}` : ""} + footers ~${formatBytes(ASSEMBLY_BYTES)}${uploadBytes > 0 ? ` + upload buffers ~${formatBytes(uploadBytes)}` : ""}` +
        ` = ~${formatBytes(memoryNeededBytes)}, but the limit is ${formatBytes(input.memoryLimitBytes)} (${input.memoryLimitSource}). ` +
        `Fix: ${room >= 64 * 1024 ** 2 ? `set MEMORY_BUDGET to ${formatBytes(room)} or less, or ` : ""}raise the job's memory (--memory)`,
    );
  }
  if (input.widestRowGroupBytes > input.budgetBytes) {
    warnings.push(
      `one row group of the widest table needs ~${formatBytes(input.widestRowGroupBytes)} to align, more than MEMORY_BUDGET ${formatBytes(input.budgetBytes)}: it is aligned a row group at a time above the budget`,
    );
  }
  if (!input.workDirInMemory && input.workDirFreeBytes !== undefined && input.workDirFreeBytes < input.budgetBytes) {
    problems.push(
      `WORK_DIR ${input.workDir} has ${formatBytes(input.workDirFreeBytes)} free, less than the part files in flight may take (up to MEMORY_BUDGET ${formatBytes(input.budgetBytes)}). Fix: point WORK_DIR at a filesystem with more room, or lower MEMORY_BUDGET`,
    );
  }
  return {
    runtimeBytes: RUNTIME_BYTES,
    extractionBytes,
    warehouseBytes,
    duckdbBytesPerWorker,
    assemblyBytes: ASSEMBLY_BYTES,
    uploadBytes,
    memoryNeededBytes,
    fits: problems.length === 0,
    problems,
    warnings,
  };
}
