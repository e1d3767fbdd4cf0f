// Piscina worker: reads one table's rows (the target, or one slice of a feature table) through the
// warehouse port's extraction half (openExtraction picks the adapter from the task's source),
// aligns them to the target's rows and writes the part file; returns a small summary. See task.ts.
import { createHash } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import pl from "nodejs-polars";
import { KEY_COLUMN } from "../constants.ts";
import { JobError } from "../errors.ts";
import { faultDrawn } from "../faults.ts";
import { retriesSpent } from "../retry.ts";
import { planRowGroups } from "../parts/plan.ts";
import { openExtraction } from "../warehouse/extraction.ts";
import { alignToKeys, checkedKeyFrame, writePart } from "./part-writer.ts";
import type { ExtractResult, ExtractTask, PartTask, TargetTask } from "./task.ts";

async function runTarget(task: TargetTask, started: number): Promise<ExtractResult> {
  const label = `${task.query.dataset}.${task.query.table}`;
  const read = await (await openExtraction(task.source)).readTarget(task.query);
  const frame = checkedKeyFrame(read.frame, label);
  if (frame.height === 0) {
    throw new JobError(`target table ${label} has no rows with ${task.query.notNullColumn} in ${task.query.dateFrom}..${task.query.dateTo}`, {
      reason: "target-empty",
      fix: "check DATE_FROM/DATE_TO and that the target table is populated",
    });
  }
  const keys = BigInt64Array.from(frame.getColumn(KEY_COLUMN).cast(pl.Int64).toTypedArray() as BigInt64Array);
  for (let i = 1; i < keys.length; i += 1) {
    if (keys[i]! <= keys[i - 1]!)
      throw new JobError(`${label}: ${KEY_COLUMN} is not strictly increasing at row ${i}`, { reason: "key-order", retryable: true });
  }
  const plan = planRowGroups(frame.height, task.rowGroupInputs);
  const keysSha256 = createHash("sha256")
    .update(new Uint8Array(keys.buffer, keys.byteOffset, keys.byteLength))
    .digest("hex");
  await mkdir(task.outDir, { recursive: true });
  const part = await writePart(
    frame,
    path.join(task.outDir, `target-${keysSha256.slice(0, 16)}.parquet`),
    { rowsPerGroup: plan.rowsPerGroup, minMax: true },
    label,
  );
  // 1.4 MB at full shape, copied once to the main thread (the one table-sized value that crosses).
  return {
    kind: "target",
    keys,
    rowsPerGroup: plan.rowsPerGroup,
    part,
    keysSha256,
    seconds: (performance.now() - started) / 1000,
    ...(read.retries ? { retries: read.retries } : {}),
    ...(read.read ? { read: read.read } : {}),
  };
}

async function runPart(task: PartTask, started: number): Promise<ExtractResult> {
  const label = `${task.query.dataset}.${task.query.table}`;
  const read = await (await openExtraction(task.source)).readSlice(task.query, task.slice);
  const frame = checkedKeyFrame(read.frame, label);
  const aligned = alignToKeys(frame, task.keys.subarray(task.slice.firstRow, task.slice.endRow), label);
  await mkdir(path.dirname(task.outPath), { recursive: true });
  const part = await writePart(aligned, task.outPath, task.writing, label);
  return {
    kind: "part",
    part,
    sourceRows: frame.height,
    seconds: (performance.now() - started) / 1000,
    ...(read.retries ? { retries: read.retries } : {}),
    ...(read.read ? { read: read.read } : {}),
  };
}

export default async function extract(task: ExtractTask): Promise<ExtractResult> {
  const started = performance.now();
  const table = task.query.table;
  const drawKey = `${task.query.dataset}.${table}${task.kind === "part" ? `#${task.slice.firstRowGroup}` : ""}`;
  if (task.fault && faultDrawn(task.fault, drawKey, task.fault.attempt)) {
    return {
      failed: true,
      table,
      message: `injected transient fault (FAULT_RATE=${task.fault.rate}) querying ${task.query.dataset}.${table}`,
      reason: "injected-fault",
      fix: "unset FAULT_RATE",
      retryable: true,
    };
  }
  try {
    return task.kind === "target" ? await runTarget(task, started) : await runPart(task, started);
  } catch (err) {
    const job = err instanceof JobError ? err : undefined;
    return {
      failed: true,
      table,
      message: (err as Error).message,
      reason: job?.reason ?? "extract-failed",
      fix: job?.fix,
      retryable: (job?.retryable ?? true) && !retriesSpent(err),
    };
  }
}
