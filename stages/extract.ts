// Stage 1: discover the pair's tables and extract each into a parquet checkpoint on a worker pool.
import { createHash } from "node:crypto";
import { statfsSync } from "node:fs";
import { mkdir, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { Piscina } from "piscina";
import { TARGET_NOT_NULL_COLUMN, planTables, type PlannedTable } from "../src/discovery.ts";
import { JobError } from "../src/errors.ts";
import { progressFigures, progressMessage } from "../src/extract/progress.ts";
import type { WorkerFailure } from "../src/extract/worker.ts";
import { checkpointFileName } from "../src/layout.ts";
import { readFooterSummary } from "../src/parquet/footer.ts";
import { planMemory } from "../src/preflight.ts";
import { isInMemoryFilesystem } from "../src/resources.ts";
import { formatBytes } from "../src/units.ts";
import { FINGERPRINT_KEY } from "../src/warehouse/duckdb.ts";
import type { ExtractResult, ExtractTask } from "../src/warehouse/port.ts";
import type { Checkpoint, Stage, StageContext } from "./types.ts";

const ATTEMPTS_PER_TABLE = 3;
const RETRY_BASE_MS = 500;
const PROGRESS_EVERY_MS = 5_000;
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
    ...base,
    checkpointPath: path.join(ctx.layout.checkpoints, checkpointFileName(table.dataset, table.table)),
    fingerprint: taskFingerprint(base),
  };
}

/** A checkpoint left by an earlier attempt counts only if its footer parses and names the same query. */
async function reusableCheckpoint(task: ExtractTask): Promise<{ rows: number; bytes: number } | undefined> {
  try {
    const footer = await readFooterSummary(task.checkpointPath);
    if (footer.keyValueMetadata[FINGERPRINT_KEY] !== task.fingerprint) return undefined;
    return { rows: footer.numRows, bytes: footer.fileBytes };
  } catch {
    return undefined;
  }
}

function freeBytes(dir: string): number | undefined {
  try {
    const { bavail, bsize } = statfsSync(dir);
    return bavail * bsize;
  } catch {
    return undefined;
  }
}

function isFailure(result: ExtractResult | WorkerFailure): result is WorkerFailure {
  return "failed" in result;
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
    const pending: ExtractTask[] = [];
    for (const task of tasks) {
      const reused = await reusableCheckpoint(task);
      if (reused) {
        results.set(task.table, { dataset: task.dataset, table: task.table, path: task.checkpointPath, ...reused, reused: true });
      } else {
        pending.push(task);
      }
    }
    if (results.size > 0) log.info({ reused: results.size }, `reusing ${results.size} checkpoints from an earlier attempt`);

    const pool = new Piscina<ExtractTask, ExtractResult | WorkerFailure>({
      filename: WORKER_FILE,
      maxThreads: config.maxWorkers,
      minThreads: Math.min(config.maxWorkers, pending.length || 1),
      idleTimeout: 1_000,
    });
    log.info({ workers: config.maxWorkers, source: config.maxWorkersSource }, `extraction pool: ${config.maxWorkers} workers (from ${config.maxWorkersSource})`);

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

    const runOne = async (task: ExtractTask): Promise<void> => {
      for (let attempt = 1; ; attempt += 1) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        const result = await pool.run(task, { signal: ctx.signal });
        if (!isFailure(result)) {
          results.set(task.table, { dataset: task.dataset, table: task.table, path: task.checkpointPath, rows: result.rows, bytes: result.bytes, reused: false });
          extracted += 1;
          log.debug({ table: task.table, rows: result.rows, seconds: result.seconds }, `extracted ${task.table}`);
          return;
        }
        if (!result.retryable || attempt >= ATTEMPTS_PER_TABLE) {
          failures.push(result);
          log.error({ table: task.table, reason: result.reason, attempts: attempt }, result.message);
          return;
        }
        const delay = RETRY_BASE_MS * 2 ** (attempt - 1) * (0.5 + Math.random());
        log.warn({ table: task.table, attempt, delayMs: Math.round(delay) }, `retrying ${task.table}: ${result.message}`);
        await sleep(delay, undefined, { signal: ctx.signal });
      }
    };

    try {
      await Promise.all(pending.map(runOne));
    } finally {
      clearInterval(timer);
      await pool.destroy();
    }
    if (pending.length > 0) report(true);

    if (failures.length > 0) {
      const names = failures.map((f) => f.table);
      const first = failures[0]!;
      throw new JobError(
        `${failures.length} of ${tasks.length} tables failed to extract: ${names.slice(0, 20).join(", ")}${names.length > 20 ? ", ..." : ""}; first error: ${first.message}`,
        { reason: first.reason, fix: first.fix ?? "see the errors logged for each table above; checkpoints already extracted are kept and reused on the next run" },
      );
    }

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
      skipped: discovery.skipped.length,
      targetRows: target.rows,
      checkpointBytes: bytes,
    };
  },
};
