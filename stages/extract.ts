// Stage 1: discover the pair's tables and extract each into a parquet checkpoint on a worker pool.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Piscina } from "piscina";
import { CheckpointStore, type StoredCheckpoint } from "../src/checkpoint-store.ts";
import { fileChecksums } from "../src/checksum.ts";
import { FINGERPRINT_KEY } from "../src/constants.ts";
import { TARGET_NOT_NULL_COLUMN, planTables, type PlannedTable } from "../src/discovery.ts";
import { JobError, describeError } from "../src/errors.ts";
import { progressFigures, progressMessage } from "../src/extract/progress.ts";
import type { WorkerFailure } from "../src/extract/worker.ts";
import { checkpointFileName } from "../src/layout.ts";
import { readFooterSummary } from "../src/parquet/footer.ts";
import { planMemory } from "../src/preflight.ts";
import { freeBytes, isInMemoryFilesystem } from "../src/resources.ts";
import { formatBytes } from "../src/units.ts";
import type { ExtractResult, ExtractTask } from "../src/warehouse/port.ts";
import type { Checkpoint, Stage, StageContext } from "./types.ts";

/** Cheap on the local backend; on BigQuery each attempt already retries its own requests. */
const ATTEMPTS_PER_TABLE = 5;
const RETRY_BASE_MS = 500;
const PROGRESS_EVERY_MS = 5_000;
/** After SIGTERM Cloud Run waits 10 s before SIGKILL; tables in flight get half of that to finish. */
const ABORT_GRACE_MS = 5_000;
const WORKER_FILE = new URL("../src/extract/worker.ts", import.meta.url).href;

export function taskFingerprint(task: Omit<ExtractTask, "fingerprint" | "checkpointPath" | "warehouse" | "backend">): string {
  const identity = JSON.stringify({
    v: 1,
    dataset: task.dataset,
    table: task.table,
    columns: task.columns,
    dateFrom: task.dateFrom,
    dateTo: task.dateTo,
    rowLimit: task.rowLimit ?? null,
    notNullColumn: task.notNullColumn ?? null,
  });
  return createHash("sha256").update(identity).digest("hex");
}

function taskFor(ctx: StageContext, table: PlannedTable): ExtractTask {
  const { config } = ctx;
  const base = {
    dataset: table.dataset,
    table: table.table,
    columns: table.columns,
    dateFrom: config.dateFrom,
    dateTo: config.dateTo,
    rowLimit: config.rowLimit,
    notNullColumn: table.role === "target" ? TARGET_NOT_NULL_COLUMN : undefined,
  };
  return {
    backend: config.backend,
    warehouse: config.warehouse,
    ...(config.backend === "gcp" ? { gcp: config.gcp } : {}),
    ...base,
    checkpointPath: path.join(ctx.layout.checkpoints, checkpointFileName(table.dataset, table.table)),
    fingerprint: taskFingerprint(base),
  };
}

/**
 * Where a checkpoint's checksums are recorded once it is complete. A checkpoint counts as landed
 * only with this record: a footer that parses does not prove the pages before it are intact (a
 * flipped byte, a disk error), the CRC32C over the whole file does.
 */
function checksumRecordPath(ctx: StageContext, checkpointPath: string): string {
  return path.join(ctx.layout.root, "checkpoint-sums", `${path.basename(checkpointPath)}.json`);
}

/** Records a complete checkpoint's size and CRC32C, atomically (temporary name, then rename). */
async function recordChecksums(ctx: StageContext, checkpointPath: string): Promise<void> {
  const sums = await fileChecksums(checkpointPath);
  const record = checksumRecordPath(ctx, checkpointPath);
  await mkdir(path.dirname(record), { recursive: true });
  const tmp = `${record}.tmp-${process.pid}`;
  await writeFile(tmp, JSON.stringify({ bytes: sums.bytes, crc32c: sums.crc32c }));
  await rename(tmp, record);
}

/**
 * A checkpoint left by an earlier attempt counts only if its footer parses, names the same query,
 * and its bytes still have the CRC32C recorded when it was written; anything else (truncated,
 * corrupted, never recorded) is extracted afresh.
 */
async function reusableCheckpoint(ctx: StageContext, task: ExtractTask): Promise<{ rows: number; bytes: number } | undefined> {
  try {
    const footer = await readFooterSummary(task.checkpointPath);
    if (footer.keyValueMetadata[FINGERPRINT_KEY] !== task.fingerprint) return undefined;
    const recorded = JSON.parse(await readFile(checksumRecordPath(ctx, task.checkpointPath), "utf8")) as { bytes: number; crc32c: string };
    if (recorded.bytes !== footer.fileBytes) return undefined;
    if ((await fileChecksums(task.checkpointPath)).crc32c !== recorded.crc32c) return undefined;
    return { rows: footer.numRows, bytes: footer.fileBytes };
  } catch {
    return undefined;
  }
}

function isFailure(result: ExtractResult | WorkerFailure): result is WorkerFailure {
  return "failed" in result;
}

function stored(task: ExtractTask): StoredCheckpoint {
  return { checkpointPath: task.checkpointPath, fingerprint: task.fingerprint, label: `${task.dataset}.${task.table}` };
}

/**
 * Tables in flight at once. DuckDB extraction is CPU work: one table per thread. A BigQuery
 * table is mostly waiting for the query and the read stream, so each thread carries several
 * (the worker's gcp path is async) and the pool stays CPU-sized.
 */
export function extractionSlots(config: { backend: "local" | "gcp"; maxWorkers: number; extractConcurrency: number }): { tasksPerWorker: number; inFlight: number } {
  const tasksPerWorker = config.backend === "gcp" ? Math.max(1, Math.ceil(config.extractConcurrency / config.maxWorkers)) : 1;
  return { tasksPerWorker, inFlight: tasksPerWorker * config.maxWorkers };
}

export const extractStage: Stage = {
  name: "extract",
  async run(ctx) {
    const { config, log, warehouse } = ctx;
    await warehouse.preflight([config.featuresDataset, config.targetsDataset]);
    const [features, targets] = [
      await warehouse.listTables(config.featuresDataset),
      await warehouse.listTables(config.targetsDataset),
    ];
    const discovery = planTables(
      config.pair,
      { dataset: config.featuresDataset, tables: features },
      { dataset: config.targetsDataset, tables: targets },
    );
    ctx.state.discovery = discovery;
    for (const skip of discovery.skipped) {
      log.warn({ table: `${skip.dataset}.${skip.table}`, reason: skip.reason }, `skipping ${skip.table}: ${skip.reason}`);
    }
    log.info(
      { featureTables: discovery.features.length, skipped: discovery.skipped.length, columns: discovery.columnCount },
      `discovered ${discovery.features.length} feature tables + 1 target table (${discovery.columnCount} columns) for ${config.pair}`,
    );

    await mkdir(ctx.layout.checkpoints, { recursive: true });
    const rowsByTable = new Map([...features, ...targets].map((t) => [`${t.dataset}.${t.name}`, t.rows]));
    const plan = planMemory({
      tables: [discovery.target, ...discovery.features].map((t) => ({ rows: rowsByTable.get(`${t.dataset}.${t.table}`), columns: t.columns.length + 1 })),
      targetRows: rowsByTable.get(`${discovery.target.dataset}.${discovery.target.table}`),
      outputColumns: discovery.columnCount,
      rowLimit: config.rowLimit,
      budgetBytes: config.memoryBudgetBytes,
      memoryLimitBytes: config.memoryLimitBytes,
      memoryLimitSource: config.memoryLimitSource,
      workDir: config.workDir,
      workDirInMemory: isInMemoryFilesystem(ctx.layout.checkpoints),
      workDirFreeBytes: freeBytes(ctx.layout.checkpoints),
    });
    log.info(
      { plan },
      `memory plan: checkpoints ~${formatBytes(plan.checkpointBytes)}, output ~${formatBytes(plan.outputBytes)}, merge ~${formatBytes(plan.mergeWorkingBytes)}; needs ~${formatBytes(plan.memoryNeededBytes)} of ${formatBytes(config.memoryLimitBytes)} memory`,
    );
    if (!plan.fits) {
      throw new JobError(plan.problems.join("\n  "), { reason: "memory-plan", fix: "see the numbers above; nothing was extracted" });
    }
    // Temporary files from an attempt that was killed mid-write are never valid checkpoints.
    for (const name of await readdir(ctx.layout.checkpoints)) {
      if (name.includes(".tmp-")) await rm(path.join(ctx.layout.checkpoints, name), { force: true });
    }

    const planned = [discovery.target, ...discovery.features];
    const tasks = planned.map((t) => taskFor(ctx, t));
    const results = new Map<string, Checkpoint>();
    let pending: ExtractTask[] = [];
    for (const task of tasks) {
      const reused = await reusableCheckpoint(ctx, task);
      if (reused) {
        results.set(task.table, { dataset: task.dataset, table: task.table, path: task.checkpointPath, ...reused, reused: true });
      } else {
        if (existsSync(task.checkpointPath)) {
          log.warn({ table: task.table, checkpoint: task.checkpointPath }, `checkpoint of ${task.table} from an earlier attempt is truncated, damaged, unrecorded or for another query: extracting it again`);
        }
        pending.push(task);
      }
    }
    if (results.size > 0) log.info({ reused: results.size }, `reusing ${results.size} checkpoints from an earlier attempt`);

    // A staging failure stops the extraction: without durable checkpoints a retry starts over.
    const stop = new AbortController();
    const signal = AbortSignal.any([ctx.signal, stop.signal]);
    const store = ctx.checkpointStore
      ? new CheckpointStore(ctx.checkpointStore, config.pair, { log, onFailure: (err) => stop.abort(err) })
      : undefined;
    let restored = 0;
    if (store) {
      const localValid = tasks.filter((t) => results.has(t.table));
      const outcome = await store.reconcile(pending.map(stored), localValid.map(stored));
      for (const task of pending) {
        const got = outcome.restored.get(task.checkpointPath);
        if (got) await recordChecksums(ctx, task.checkpointPath);
        if (got) results.set(task.table, { dataset: task.dataset, table: task.table, path: task.checkpointPath, ...got, reused: true, restored: true });
      }
      restored = outcome.restored.size;
      pending = pending.filter((t) => !outcome.restored.has(t.checkpointPath));
      log.info(
        { restored, stored: outcome.stored, stale: outcome.stale, unusable: outcome.unusable, restaged: outcome.restaged, store: store.location },
        `restored ${restored} checkpoints from CHECKPOINT_URI ${store.location} (${outcome.stored} stored${outcome.stale > 0 ? `, ${outcome.stale} for another query, extracted again` : ""}${outcome.unusable > 0 ? `, ${outcome.unusable} unusable, extracted again` : ""})`,
      );
    }

    const slots = extractionSlots(config);
    const pool = new Piscina<ExtractTask, ExtractResult | WorkerFailure>({
      filename: WORKER_FILE,
      maxThreads: config.maxWorkers,
      minThreads: Math.min(config.maxWorkers, pending.length || 1),
      concurrentTasksPerWorker: slots.tasksPerWorker,
      // Piscina's default parks an idle worker in a blocking Atomics.wait, and a thread parked
      // there ignored terminate(): a SIGTERM then hung the job instead of exiting 130.
      atomics: "disabled",
      idleTimeout: 1_000,
    });
    if (config.backend === "gcp") {
      log.info(
        { workers: config.maxWorkers, source: config.maxWorkersSource, tasksPerWorker: slots.tasksPerWorker, inFlight: slots.inFlight, extractConcurrency: config.extractConcurrency },
        `extraction pool: ${config.maxWorkers} workers (from ${config.maxWorkersSource}) x ${slots.tasksPerWorker} tables each = ${slots.inFlight} tables in flight (from EXTRACT_CONCURRENCY=${config.extractConcurrency}, default 32 for BACKEND=gcp)`,
      );
    } else {
      log.info({ workers: config.maxWorkers, source: config.maxWorkersSource, inFlight: slots.inFlight }, `extraction pool: ${config.maxWorkers} workers (from ${config.maxWorkersSource})`);
    }

    const started = ctx.now();
    let lastProgress = started;
    let extracted = 0;
    const failures: WorkerFailure[] = [];
    const report = (force = false) => {
      const now = ctx.now();
      if (!force && now - lastProgress < PROGRESS_EVERY_MS) return;
      lastProgress = now;
      const figures = progressFigures(extracted, pending.length, now - started);
      log.info({ progress: figures, reused: tasks.length - pending.length }, progressMessage("extracted", figures));
    };
    const timer = setInterval(() => report(), PROGRESS_EVERY_MS).unref();

    let retries = 0;
    const runOne = async (task: ExtractTask): Promise<void> => {
      for (let attempt = 1; ; attempt += 1) {
        if (signal.aborted) throw signal.reason;
        const fault = config.faults && config.backend === "local" ? { ...config.faults, attempt } : undefined;
        const result = await pool.run(fault ? { ...task, fault } : task);
        if (!isFailure(result)) {
          await recordChecksums(ctx, task.checkpointPath);
          results.set(task.table, { dataset: task.dataset, table: task.table, path: task.checkpointPath, rows: result.rows, bytes: result.bytes, reused: false });
          extracted += 1;
          if (!ctx.signal.aborted) store?.stage({ ...stored(task), rows: result.rows });
          if (result.retries) {
            retries += result.retries;
            log.info({ table: task.table, rows: result.rows, seconds: result.seconds, retries: result.retries }, `extracted ${task.table} after ${result.retries} retried requests or resumed streams`);
          } else {
            log.debug({ table: task.table, rows: result.rows, seconds: result.seconds }, `extracted ${task.table}`);
          }
          return;
        }
        if (!result.retryable || attempt >= ATTEMPTS_PER_TABLE) {
          failures.push(result);
          log.error({ table: task.table, reason: result.reason, attempts: attempt }, result.message);
          return;
        }
        const delay = RETRY_BASE_MS * 2 ** (attempt - 1) * (0.5 + Math.random());
        log.warn({ table: task.table, attempt, delayMs: Math.round(delay) }, `retrying ${task.table}: ${result.message}`);
        await sleep(delay, undefined, { signal });
      }
    };

    // Tasks go to piscina without the signal, at most `inFlight` at a time: piscina runs an
    // abortable task alone on its thread, which would cap the tables in flight at the pool size,
    // and aborting one terminates its thread, which inside DuckDB's native code crashes the
    // process (exit 134, not 130). On an abort no new table starts; the tables in flight get
    // ABORT_GRACE_MS to finish (their checkpoints are kept), then the pool is torn down.
    let destroyed: Promise<void> | undefined;
    const destroyPool = () => (destroyed ??= pool.destroy());
    let graceTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      graceTimer = setTimeout(() => void destroyPool(), ABORT_GRACE_MS);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    let next = 0;
    const lane = async (): Promise<void> => {
      while (next < pending.length && !signal.aborted) await runOne(pending[next++]!);
    };
    let outcomes: PromiseSettledResult<void>[];
    try {
      outcomes = await Promise.allSettled(Array.from({ length: Math.min(slots.inFlight, pending.length) }, lane));
    } finally {
      signal.removeEventListener("abort", onAbort);
      clearTimeout(graceTimer);
      clearInterval(timer);
      await destroyPool();
    }
    if (signal.aborted) {
      log.warn(
        { extracted, reused: tasks.length - pending.length, notStarted: pending.length - next, tables: tasks.length },
        `extraction stopped: ${extracted} tables extracted by this attempt and ${tasks.length - pending.length} reused are kept as checkpoints for the next attempt; ${pending.length - extracted} not extracted`,
      );
      await store?.settle();
      // Report the interruption or the staging failure, not the pool teardown they caused.
      throw ctx.signal.aborted ? ctx.signal.reason : (store?.failure ?? signal.reason);
    }
    const crashed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
    if (crashed) {
      await store?.settle();
      throw crashed.reason;
    }
    if (pending.length > 0) report(true);

    // Every checkpoint extracted is staged before the stage ends, failed tables or not, so that
    // a retry resumes from all of them.
    let staging: { staged: number; bytes: number } | undefined;
    let stagingError: unknown;
    if (store) {
      if (store.pending > 0) log.info({ pending: store.pending }, `waiting for ${store.pending} checkpoints to be staged in ${store.location}`);
      try {
        staging = await store.drain();
        log.info({ staged: staging.staged, bytes: staging.bytes, store: store.location }, `staged ${staging.staged} checkpoints (${formatBytes(staging.bytes)}) in ${store.location}`);
      } catch (err) {
        stagingError = err;
      }
    }

    if (failures.length > 0) {
      if (stagingError) log.error({ reason: "checkpoint-staging-failed" }, describeError(stagingError));
      const names = failures.map((f) => f.table);
      const first = failures[0]!;
      throw new JobError(
        `${failures.length} of ${tasks.length} tables failed to extract: ${names.slice(0, 20).join(", ")}${names.length > 20 ? ", ..." : ""}; first error: ${first.message}`,
        { reason: first.reason, fix: first.fix ?? "see the errors logged for each table above; checkpoints already extracted are kept and reused on the next run" },
      );
    }

    if (stagingError) throw stagingError;

    const byTable = (t: PlannedTable): Checkpoint => results.get(t.table)!;
    const target = byTable(discovery.target);
    if (target.rows === 0) {
      throw new JobError(`target table ${discovery.target.dataset}.${discovery.target.table} has no rows with ${TARGET_NOT_NULL_COLUMN} in ${config.dateFrom}..${config.dateTo}`, {
        reason: "target-empty",
        fix: "check DATE_FROM/DATE_TO and that the target table is populated",
      });
    }
    ctx.state.checkpoints = { target, features: discovery.features.map(byTable) };
    const bytes = [...results.values()].reduce((n, c) => n + c.bytes, 0);
    return {
      tables: tasks.length,
      extracted,
      reused: tasks.length - pending.length,
      ...(store ? { restored, staged: staging?.staged ?? 0 } : {}),
      ...(config.backend === "gcp" ? { inFlight: slots.inFlight, retries } : {}),
      skipped: discovery.skipped.length,
      targetRows: target.rows,
      checkpointBytes: bytes,
    };
  },
};
