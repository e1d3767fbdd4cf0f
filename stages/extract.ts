// Stage 1: discover the pair's tables, read the target first (its keys define the rows and the
// row-group plan), then align every feature table to those rows on a worker pool, staging each
// aligned table (or slice of one) in the output's bucket as a part. A part an earlier attempt
// staged is reused when its fingerprint and CRC32C still hold; nothing else is written anywhere.
import { rm } from "node:fs/promises";
import path from "node:path";
import { tablesPerThread } from "../src/concurrency.ts";
import { JobError, describeError } from "../src/errors.ts";
import { ExtractionPool, isFailure } from "../src/extract/pool.ts";
import { progressFigures, progressMessage } from "../src/extract/progress.ts";
import { rowGroupSizes } from "../src/extract/part-writer.ts";
import type { PartTask, PartWriting, ReadFigures, SourceSettings, TargetResult, WorkerFailure } from "../src/extract/task.ts";
import { partFingerprint } from "../src/parts/fingerprint.ts";
import { planRowGroups, planSlices, sliceWorkingBytes, type RowGroupPlan } from "../src/parts/plan.ts";
import { PartStore, type PartSpec, type StagedPart } from "../src/parts/store.ts";
import { formatBytes } from "../src/units.ts";
import { discover, enforceMemoryPlan, planExtraction, queryFor } from "./discover.ts";
import type { BigQueryReads, Stage, StageContext, TableOutcome } from "./types.ts";

const PROGRESS_EVERY_MS = 5_000;
const FEATURE_WRITING: Omit<PartWriting, "rowsPerGroup"> = { minMax: false };

function sourceSettings(ctx: StageContext, duckdbBytesPerWorker: number): SourceSettings {
  const { config } = ctx;
  return config.backend === "gcp" ? { backend: "gcp", gcp: config.gcp } : { backend: "local", warehouse: config.warehouse, duckdb: { memoryLimitBytes: duckdbBytesPerWorker, threads: 1 } };
}

/** Adds one read's figures to the run's (BACKEND=gcp only: DuckDB reads report none). */
function countRead(reads: BigQueryReads, read: ReadFigures | undefined): void {
  if (!read) return;
  if (read.route === "table") reads.tableReads += 1;
  else reads.queryJobs += 1;
  reads.streams += read.streams;
  reads.estimatedBytesScanned += read.bytesScanned;
}

function taskFailure(failure: WorkerFailure): JobError {
  return new JobError(failure.message, { reason: failure.reason, fix: failure.fix, retryable: failure.retryable });
}

export const extractStage: Stage = {
  name: "extract",
  async run(ctx) {
    const { config, log } = ctx;
    const stageStarted = ctx.now();
    // Per table (plan index): when this run first read it and when its last part was staged.
    const timing = new Map<number, { start: number; end: number }>();
    const timed = (table: number, start: number) => {
      const t = timing.get(table);
      timing.set(table, { start: Math.min(t?.start ?? start, start), end: Math.max(t?.end ?? 0, ctx.now()) });
    };
    const found = await discover(ctx);
    const { discovery } = found;
    ctx.state.discovery = discovery;
    const tables = [discovery.target, ...discovery.features];
    const { widths, targetRowsGuess, rowGroupInputs, guessPlan, memory } = planExtraction(config, found);
    enforceMemoryPlan(ctx, memory);

    await rm(ctx.layout.parts, { recursive: true, force: true });
    const store = new PartStore(ctx.bucket, config.pair);
    const source = sourceSettings(ctx, memory.duckdbBytesPerWorker);
    const tasksPerThread = tablesPerThread(config.backend, config.extractConcurrency, config.maxWorkers);
    const stop = new AbortController();
    const signal = AbortSignal.any([ctx.signal, stop.signal]);
    let retries = 0;
    const reads: BigQueryReads = { tableReads: 0, queryJobs: 0, streams: 0, estimatedBytesScanned: 0 };
    const pool = new ExtractionPool({
      threads: config.maxWorkers,
      tasksPerThread,
      budgetBytes: config.memoryBudgetBytes,
      signal,
      faults: config.faults,
      onRetry: (task, attempt, delayMs, failure) => {
        retries += 1;
        log.warn({ table: task.query.table, attempt, delayMs, reason: failure.reason }, `retrying ${task.query.table}: ${failure.message}`);
      },
    });
    log.info(
      { workers: config.maxWorkers, source: config.maxWorkersSource, tasksPerWorker: tasksPerThread, budgetBytes: config.memoryBudgetBytes },
      `extraction pool: ${config.maxWorkers} workers (from ${config.maxWorkersSource}) x ${tasksPerThread} tables each, within MEMORY_BUDGET ${formatBytes(config.memoryBudgetBytes)} (${config.memoryBudgetSource})`,
    );
    try {
      // --- the target first: its keys are the rows, its row count the row-group plan ---
      const targetQuery = queryFor(ctx.config, discovery.target);
      const targetEstimate = guessPlan ? sliceWorkingBytes(targetRowsGuess, widths[0]!) : config.memoryBudgetBytes;
      await pool.reserve(targetEstimate);
      const targetStarted = ctx.now();
      const got = await pool.run({ kind: "target", source, query: targetQuery, rowGroupInputs, outDir: ctx.layout.parts }, targetEstimate);
      if (isFailure(got)) throw taskFailure(got);
      const target = got as TargetResult;
      countRead(reads, target.read);
      const plan = planRowGroups(target.keys.length, rowGroupInputs);
      if (plan.rowsPerGroup !== target.rowsPerGroup) throw new Error(`row-group plans disagree: ${plan.rowsPerGroup} in the main thread, ${target.rowsPerGroup} in the worker`);
      const rowGroupRows = rowGroupSizes(plan.rows, plan.rowsPerGroup);
      log.info(
        { rows: plan.rows, rowsPerGroup: plan.rowsPerGroup, rowGroups: plan.groups, footerEstimateBytes: plan.footerEstimateBytes, decodedGroupBytes: plan.decodedGroupBytes, limitedBy: plan.limitedBy },
        `${plan.rows} training rows in ${plan.groups} row groups of ${plan.rowsPerGroup} rows: ${
          plan.limitedBy === "both"
            ? `footer ~${formatBytes(plan.footerEstimateBytes)} and row groups of ~${formatBytes(plan.decodedGroupBytes)} decoded, both within their limits`
            : plan.limitedBy === "footer"
              ? `the footer limit wins: ~${formatBytes(plan.footerEstimateBytes)} of footer, row groups of ~${formatBytes(plan.decodedGroupBytes)} decoded (above the 512 MiB aim)`
              : `as ROW_GROUP_ROWS asks (footer ~${formatBytes(plan.footerEstimateBytes)}, row groups of ~${formatBytes(plan.decodedGroupBytes)} decoded)`
        }`,
      );
      const keys = new BigInt64Array(new SharedArrayBuffer(target.keys.byteLength));
      keys.set(target.keys);

      const identity = { keysSha256: target.keysSha256, rowsPerGroup: plan.rowsPerGroup, rows: plan.rows };
      const targetSpec: PartSpec = {
        fingerprint: partFingerprint({ ...identity, query: targetQuery, tableVersion: discovery.target.version, firstRowGroup: 0, endRowGroup: plan.groups, writing: { rowsPerGroup: plan.rowsPerGroup, minMax: true } }),
        table: 0,
        label: `${discovery.target.dataset}.${discovery.target.table}`,
        firstRowGroup: 0,
        endRowGroup: plan.groups,
        rowGroupRows,
      };
      const writing: PartWriting = { ...FEATURE_WRITING, rowsPerGroup: plan.rowsPerGroup };
      const share = config.memoryBudgetBytes / config.maxWorkers;
      const featureWork = discovery.features.flatMap((t, i) => {
        const query = queryFor(ctx.config, t);
        return planSlices(plan, widths[i + 1]!, share).map((slice) => {
          const spec: PartSpec = {
            fingerprint: partFingerprint({ ...identity, query, tableVersion: t.version, firstRowGroup: slice.firstRowGroup, endRowGroup: slice.endRowGroup, writing }),
            table: i + 1,
            label: `${t.dataset}.${t.table}`,
            firstRowGroup: slice.firstRowGroup,
            endRowGroup: slice.endRowGroup,
            rowGroupRows: rowGroupRows.slice(slice.firstRowGroup, slice.endRowGroup),
          };
          const task: PartTask = {
            kind: "part",
            source,
            query,
            keys,
            slice: {
              ...slice,
              afterKey: slice.firstRow === 0 ? undefined : keys[slice.firstRow - 1],
              throughKey: slice.endRow === plan.rows ? undefined : keys[slice.endRow - 1],
            },
            writing,
            fingerprint: spec.fingerprint,
            outPath: path.join(ctx.layout.parts, `${spec.fingerprint}.parquet`),
          };
          return { spec, task, estimate: sliceWorkingBytes(slice.endRow - slice.firstRow, widths[i + 1]!) };
        });
      });

      // --- what an earlier attempt left in the bucket ---
      const staged = new Map<string, StagedPart>();
      const present = await store.inventory();
      const checks = [targetSpec, ...featureWork.map((w) => w.spec)].filter((s) => present.has(s.fingerprint));
      await Promise.all(
        checks.map(async (spec) => {
          const found = await store.find(spec);
          if ("problem" in found) log.warn({ table: spec.label, rowGroups: `${spec.firstRowGroup}-${spec.endRowGroup}`, part: spec.fingerprint }, `part of ${spec.label} (row groups ${spec.firstRowGroup}-${spec.endRowGroup}) in the bucket is ${found.problem}: extracting it again`);
          else staged.set(spec.fingerprint, found);
        }),
      );
      if (staged.size > 0) log.info({ reused: staged.size, store: store.location }, `reusing ${staged.size} parts staged by an earlier attempt in ${store.location}`);
      if (!staged.has(targetSpec.fingerprint)) {
        pool.hold(target.part.fileBytes);
        try {
          staged.set(targetSpec.fingerprint, await store.stage(targetSpec, target.part, plan.rows));
        } finally {
          pool.release(target.part.fileBytes, false);
        }
      } else {
        await rm(target.part.path, { force: true });
      }
      timed(0, targetStarted);

      // --- every other part: aligned on the pool, staged as it lands ---
      const pending = featureWork.filter((w) => !staged.has(w.spec.fingerprint));
      const failures: WorkerFailure[] = [];
      const started = ctx.now();
      let done = 0;
      let stagingFailure: unknown;
      const report = (force = false) => {
        const figures = progressFigures(done, pending.length, ctx.now() - started);
        if (force || pending.length > 0) log.info({ progress: figures, reused: staged.size - done, heldBytes: pool.reservedBytes }, progressMessage("extracted", figures));
      };
      const timer = setInterval(() => report(), PROGRESS_EVERY_MS).unref();
      const runOne = async (work: (typeof pending)[number]): Promise<void> => {
        const workStarted = ctx.now();
        const result = await pool.run(work.task, work.estimate);
        if (isFailure(result)) {
          failures.push(result);
          log.error({ table: work.spec.label, reason: result.reason }, result.message);
          return;
        }
        if (result.kind !== "part") throw new Error("a part task returned a target result");
        if (result.retries) retries += result.retries;
        countRead(reads, result.read);
        // The part file stays in WORK_DIR (memory, on Cloud Run) until it is staged.
        pool.hold(result.part.fileBytes);
        try {
          staged.set(work.spec.fingerprint, await store.stage(work.spec, result.part, result.sourceRows));
          timed(work.spec.table, workStarted);
          done += 1;
          log.debug(
            { table: work.spec.label, part: work.spec.fingerprint, rowGroups: `${work.spec.firstRowGroup}-${work.spec.endRowGroup}`, rows: result.sourceRows, seconds: result.seconds },
            `extracted ${work.spec.label} row groups ${work.spec.firstRowGroup}-${work.spec.endRowGroup} as part ${work.spec.fingerprint.slice(0, 12)}`,
          );
        } catch (err) {
          stagingFailure ??= err;
          stop.abort(err);
        } finally {
          pool.release(result.part.fileBytes, false);
        }
      };
      const inFlight = new Set<Promise<void>>();
      try {
        for (const work of pending) {
          if (signal.aborted) break;
          await pool.reserve(work.estimate).catch(() => undefined);
          if (signal.aborted) break;
          const p = runOne(work).catch((err: unknown) => {
            if (!signal.aborted) failures.push({ failed: true, table: work.spec.label, message: describeError(err), reason: "extract-failed", fix: undefined, retryable: false });
          });
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
        }
        await Promise.allSettled([...inFlight]);
      } finally {
        clearInterval(timer);
      }
      if (signal.aborted) {
        log.warn(
          { extracted: done, reused: staged.size - done, parts: featureWork.length + 1 },
          `extraction stopped: ${staged.size} parts are staged in ${store.location} for the next attempt; ${pending.length - done} not extracted`,
        );
        throw ctx.signal.aborted ? ctx.signal.reason : (stagingFailure ?? signal.reason);
      }
      if (pending.length > 0) report(true);
      if (failures.length > 0) {
        const names = [...new Set(failures.map((f) => f.table))];
        const first = failures[0]!;
        throw new JobError(
          `${names.length} of ${tables.length} tables failed to extract: ${names.slice(0, 20).join(", ")}${names.length > 20 ? ", ..." : ""}; first error: ${first.message}`,
          { reason: first.reason, fix: first.fix ?? "see the errors logged for each table above; the parts already staged are reused on the next run" },
        );
      }

      const parts = [targetSpec, ...featureWork.map((w) => w.spec)].map((s) => staged.get(s.fingerprint)!);
      const outcomes: TableOutcome[] = tables.map((t, i) => {
        const own = parts.filter((p) => p.table === i);
        const label = `${t.dataset}.${t.table}`;
        const time = timing.get(i);
        const seconds = (ms: number) => Number((ms / 1000).toFixed(3));
        return {
          table: label,
          version: t.version ?? null,
          rows: own.reduce((n, p) => n + p.sourceRows, 0),
          parts: own.length,
          reusedParts: own.filter((p) => p.reused).length,
          ...(time ? { startedSeconds: seconds(time.start - stageStarted), seconds: seconds(time.end - time.start) } : {}),
        };
      });
      const gcpReads = config.backend === "gcp" ? reads : undefined;
      ctx.state.extraction = { plan, rowGroupRows, target: { rows: plan.rows, keysSha256: target.keysSha256, keyStrictlyIncreasing: true }, parts, tables: outcomes, ...(gcpReads ? { reads: gcpReads } : {}) };
      if (gcpReads) {
        log.info(
          { reads: gcpReads },
          `BigQuery reads: ${gcpReads.tableReads} read sessions on the tables themselves (${gcpReads.streams} streams), ${gcpReads.queryJobs} extraction query jobs; the sessions estimate ${formatBytes(gcpReads.estimatedBytesScanned)} scanned`,
        );
      }
      const bytes = parts.reduce((n, p) => n + p.chunks.bytes, 0);
      return {
        tables: tables.length,
        parts: parts.length,
        extracted: done + (parts[0]!.reused ? 0 : 1),
        reused: parts.filter((p) => p.reused).length,
        skipped: discovery.skipped.length,
        targetRows: plan.rows,
        rowGroups: plan.groups,
        stagedBytes: bytes,
        ...(gcpReads ? { tableReads: gcpReads.tableReads, queryJobs: gcpReads.queryJobs, readStreams: gcpReads.streams, estimatedBytesScanned: gcpReads.estimatedBytesScanned } : {}),
        ...(retries ? { retries } : {}),
      } satisfies Record<string, unknown>;
    } finally {
      await pool.destroy();
    }
  },
};

export type { RowGroupPlan };
