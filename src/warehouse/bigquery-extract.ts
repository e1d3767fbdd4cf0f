// The gcp path of an extraction task, run inside a pool worker: the production query as a
// BigQuery job, its result read back through the Storage Read API, written as a checkpoint with
// the same contract as extractWithDuckDB (whole or absent, key checked, fingerprint in the
// footer). Everything here awaits I/O, so one worker thread can carry several tables at once
// (piscina's concurrentTasksPerWorker) while BigQuery works.
import { randomBytes } from "node:crypto";
import { rename, rm, stat } from "node:fs/promises";
import { BigQuery } from "@google-cloud/bigquery";
import { KEY_COLUMN } from "../constants.ts";
import { JobError } from "../errors.ts";
import type { FailureContext } from "../gcp/errors.ts";
import { workerClients } from "./bigquery-clients.ts";
import { CheckpointBuilder } from "./bigquery-checkpoint.ts";
import { quoteBigQueryIdent, runQueryJob } from "./bigquery-query.ts";
import { readTableArrow } from "./bigquery-read.ts";
import { CHECKPOINT_ROW_GROUP_ROWS, FINGERPRINT_KEY } from "../constants.ts";
import type { ExtractTask } from "./port.ts";

/**
 * The production query shape in GoogleSQL: `DATE(interval_time) BETWEEN @date_from AND @date_to`
 * with DATE query parameters (never spliced dates), identifiers in backticks, columns renamed
 * in the SELECT so the result already has the checkpoint's names.
 */
export function bigQueryExtractionSql(task: Pick<ExtractTask, "dataset" | "table" | "columns" | "rowLimit" | "notNullColumn">, project: string): string {
  const q = quoteBigQueryIdent;
  const select = [q(KEY_COLUMN), ...task.columns.map((c) => (c.source === c.target ? q(c.source) : `${q(c.source)} AS ${q(c.target)}`))];
  const where = [`DATE(${q(KEY_COLUMN)}) BETWEEN @date_from AND @date_to`, ...(task.notNullColumn ? [`${q(task.notNullColumn)} IS NOT NULL`] : [])];
  const limit = task.rowLimit !== undefined ? ` LIMIT ${task.rowLimit}` : "";
  return `SELECT ${select.join(", ")} FROM ${q(`${project}.${task.dataset}.${task.table}`)} WHERE ${where.join(" AND ")} ORDER BY ${q(KEY_COLUMN)}${limit}`;
}

export async function extractWithBigQuery(task: ExtractTask): Promise<{ rows: number; bytes: number; retries: number }> {
  const gcp = task.gcp;
  if (task.backend !== "gcp" || !gcp) {
    throw new JobError(`extract task for ${task.dataset}.${task.table} has no BigQuery settings`, {
      reason: "task-invalid",
      fix: "the extract stage must pass `gcp` (project, endpoints, queryTimeoutMs) with backend \"gcp\"",
    });
  }
  const label = `${task.dataset}.${task.table}`;
  const fullName = `${gcp.project}.${label}`;
  const ctx: FailureContext = { action: `querying ${fullName}`, project: gcp.project, location: gcp.location, dataset: task.dataset, table: task.table };
  const tmp = `${task.checkpointPath}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  const builder = new CheckpointBuilder({
    label,
    table: task.table,
    columns: [KEY_COLUMN, ...task.columns.map((c) => c.target)],
    rowGroupRows: CHECKPOINT_ROW_GROUP_ROWS,
    partPrefix: tmp,
  });
  // Retried requests and resumed streams, reported with the result (a worker has no logger).
  let retries = 0;
  const onRetry = () => void retries++;
  try {
    const { bigquery, read } = await workerClients(gcp);
    const { destination } = await runQueryJob(
      bigquery,
      {
        sql: bigQueryExtractionSql(task, gcp.project),
        params: { date_from: BigQuery.date(task.dateFrom), date_to: BigQuery.date(task.dateTo) },
        timeoutMs: gcp.queryTimeoutMs,
        jobPrefix: `bqx_extract_${task.table}`,
      },
      { retry: gcp.retry, ctx, onRetry },
    );
    await readTableArrow(read, destination, builder, {
      project: gcp.project,
      retry: gcp.retry,
      idleTimeoutMs: gcp.readIdleTimeoutMs,
      onRetry,
      ctx: { ...ctx, action: `reading the result of ${fullName} (${destination.datasetId}.${destination.tableId})` },
    });
    const rows = await builder.finish(tmp, { [FINGERPRINT_KEY]: task.fingerprint, "bqx.table": label });
    await rename(tmp, task.checkpointPath);
    return { rows, bytes: (await stat(task.checkpointPath)).size, retries };
  } catch (err) {
    await rm(tmp, { force: true });
    if (err instanceof JobError) throw err;
    throw new JobError(`extracting ${label} from BigQuery failed: ${(err as Error).message}`, { reason: "extract-failed", retryable: true, cause: err });
  } finally {
    await builder.discard();
  }
}
