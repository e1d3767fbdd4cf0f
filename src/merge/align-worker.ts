// Piscina worker for the merge: aligns one checkpoint to the target rows (align.ts). The target
// keys arrive once per task as a view on a SharedArrayBuffer (no copy); table data never crosses
// threads, only a small summary or a plain failure object comes back.
import { JobError } from "../errors.ts";
import { alignCheckpoint, type AlignOptions, type AlignResult } from "./align.ts";

export interface AlignTask extends Omit<AlignOptions, "keys"> {
  /** Target keys (µs), backed by a SharedArrayBuffer. */
  keys: BigInt64Array;
}

export interface AlignFailure {
  failed: true;
  table: string;
  message: string;
  reason: string;
  fix: string | undefined;
}

export default async function align(task: AlignTask): Promise<AlignResult | AlignFailure> {
  try {
    return await alignCheckpoint(task);
  } catch (err) {
    const job = err instanceof JobError ? err : undefined;
    return { failed: true, table: task.table, message: (err as Error).message, reason: job?.reason ?? "align-failed", fix: job?.fix };
  }
}
