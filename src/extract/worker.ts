// Piscina worker: extracts one table into one checkpoint. It receives a small serialisable task
// and returns a small summary; table data never crosses threads.
import { createHash } from "node:crypto";
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

/** FAULT_RATE's draw for one attempt of one table: reproducible from the seed, whatever thread runs it. */
function injectedFault(task: ExtractTask): boolean {
  if (!task.fault) return false;
  const digest = createHash("sha256").update(`${task.fault.seed}:${task.dataset}.${task.table}:${task.fault.attempt}`).digest();
  return digest.readUInt32BE(0) / 2 ** 32 < task.fault.rate;
}

export default async function extract(task: ExtractTask): Promise<ExtractResult | WorkerFailure> {
  const started = performance.now();
  if (injectedFault(task)) {
    return {
      failed: true,
      table: task.table,
      message: `injected transient fault (FAULT_RATE=${task.fault!.rate}) querying ${task.dataset}.${task.table}`,
      reason: "injected-fault",
      fix: "unset FAULT_RATE",
      retryable: true,
    };
  }
  try {
    // The BigQuery path loads its client libraries only in workers that need them.
    const done: { rows: number; bytes: number; retries?: number } =
      task.backend === "gcp" ? await (await import("../warehouse/bigquery-extract.ts")).extractWithBigQuery(task) : await extractWithDuckDB(task);
    return {
      table: task.table,
      rows: done.rows,
      bytes: done.bytes,
      seconds: (performance.now() - started) / 1000,
      reused: false,
      ...(done.retries ? { retries: done.retries } : {}),
    };
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
