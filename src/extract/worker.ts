// Piscina worker: extracts one table into one checkpoint. It receives a small serialisable task
// and returns a small summary; table data never crosses threads.
import { performance } from "node:perf_hooks";
import type { ExtractResult, ExtractTask } from "../warehouse/port.ts";
import { extractWithDuckDB } from "../warehouse/duckdb.ts";
import { JobError } from "../errors.ts";

/** Errors cross the thread boundary as plain objects; the stage turns them back into JobErrors. */
export interface WorkerFailure {
  failed: true;
  table: string;
  message: string;
  reason: string;
  fix: string | undefined;
  retryable: boolean;
}

export default async function extract(task: ExtractTask): Promise<ExtractResult | WorkerFailure> {
  const started = performance.now();
  try {
    const { rows, bytes } = await extractWithDuckDB(task);
    return { table: task.table, rows, bytes, seconds: (performance.now() - started) / 1000, reused: false };
  } catch (err) {
    const job = err instanceof JobError ? err : undefined;
    return {
      failed: true,
      table: task.table,
      message: (err as Error).message,
      reason: job?.reason ?? "extract-failed",
      fix: job?.fix,
      retryable: job?.retryable ?? true,
    };
  }
}
