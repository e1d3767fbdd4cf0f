// Stage 1: discover the pair's tables, read the target first (its keys define the rows and the
// row-group plan), then align every feature table to those rows on a worker pool, staging each
// aligned table (or slice of one) in the output's bucket as a part. A part an earlier attempt
// staged is reused when its fingerprint and CRC32C still hold; nothing else is written anywhere.
import { rm } from "node:fs/promises";
import path from "node:path";
import { KEY_COLUMN } from "../src/constants.ts";
import { TARGET_NOT_NULL_COLUMN, planTables, type Discovery, type PlannedTable } from "../src/discovery.ts";
import { JobError, describeError } from "../src/errors.ts";
import { ExtractionPool, isFailure } from "../src/extract/pool.ts";
import { progressFigures, progressMessage } from "../src/extract/progress.ts";
import { rowGroupSizes } from "../src/extract/part-writer.ts";
import type { PartTask, PartWriting, ReadFigures, SourceSettings, TableQuery, TargetResult, WorkerFailure } from "../src/extract/task.ts";
import { partFingerprint } from "../src/parts/fingerprint.ts";
import { footerBytesPerRowGroup, planRowGroups, planSlices, sliceWorkingBytes, type RowGroupPlan } from "../src/parts/plan.ts";
import { PartStore, type PartSpec, type StagedPart } from "../src/parts/store.ts";
import { planMemory } from "../src/preflight.ts";
import { freeBytes, isInMemoryFilesystem } from "../src/resources.ts";
import { formatBytes } from "../src/units.ts";
import type { BigQueryReads, Stage, StageContext, TableOutcome } from "./types.ts";

const PROGRESS_EVERY_MS = 5_000;
const FEATURE_WRITING: Omit<PartWriting, "rowsPerGroup"> = { minMax: false };

function queryFor(ctx: StageContext, table: PlannedTable): TableQuery {
  return {
    dataset: table.dataset,
    table: table.table,
    columns: table.columns,
    dateFrom: ctx.config.dateFrom,
    dateTo: ctx.config.dateTo,
    rowLimit: ctx.config.rowLimit,
    notNullColumn: table.role === "target" ? TARGET_NOT_NULL_COLUMN : undefined,
    ...(table.zonelessKey ? { zonelessKey: true as const } : {}),
  };
}

async function discover(ctx: StageContext): Promise<{ discovery: Discovery; rowsByTable: Map<string, number | undefined> }> {
  const { config, log, warehouse } = ctx;
  await warehouse.preflight([config.featuresDataset, config.targetsDataset]);
  const features = await warehouse.listTables(config.featuresDataset);
  const targets = await warehouse.listTables(config.targetsDataset);
  const discovery = planTables(config.pair, { dataset: config.featuresDataset, tables: features }, { dataset: config.targetsDataset, tables: targets }, warehouse.keyTypes);
  const zoneless = discovery.zonelessKeys;
  if (zoneless.length > 0) {
    const { utc, zoneless: names } = warehouse.keyTypes;
    log.warn(
      { zonelessKeys: zoneless.length, tables: zoneless.slice(0, 20) },
      `${KEY_COLUMN} has no time zone (${names[0]}) in ${zoneless.length} of ${discovery.features.length + 1} tables (${zoneless.slice(0, 3).join(", ")}${zoneless.length > 3 ? ", ..." : ""}): its values are read as UTC; store it as ${utc[0]} to make that explicit`,
    );
  }
  // Versions only for the tables the file is made of: a features dataset holds every pair's tables.
  const range = { dateFrom: config.dateFrom, dateTo: config.dateTo };
  const started = ctx.now();
  const [featureVersions, targetVersions] = await Promise.all([
    warehouse.tableVersions(config.featuresDataset, discovery.features.map((t) => t.table), range),
    warehouse.tableVersions(config.targetsDataset, [discovery.target.table], range),
  ]);
  discovery.target.version = targetVersions.get(discovery.target.table)?.version;
  for (const t of discovery.features) t.version = featureVersions.get(t.table)?.version;
  log.info({ tables: discovery.features.length + 1, seconds: (ctx.now() - started) / 1000 }, `read the versions of ${discovery.features.length + 1} tables in ${((ctx.now() - started) / 1000).toFixed(1)} s`);
  // What the reads will scan, before any is made, where the warehouse tells (BigQuery).
  const sizes = [...featureVersions.values(), ...targetVersions.values()].map((v) => v.bytes);
  if (sizes.length > 0 && sizes.every((b) => b !== undefined)) {
    const bytes = sizes.reduce((n: number, b) => n + b!, 0);
    log.info(
      { bytesToScanAtMost: bytes },
      `the reads will scan at most ${formatBytes(bytes)} (the ${sizes.length} tables' logical bytes in INFORMATION_SCHEMA.PARTITIONS; each read session reports its own estimate, summed when extraction ends)`,
    );
  }
  for (const skip of discovery.skipped) log.warn({ table: `${skip.dataset}.${skip.table}`, reason: skip.reason }, `skipping ${skip.table}: ${skip.reason}`);
  log.info(
    { featureTables: discovery.features.length, skipped: discovery.skipped.length, columns: discovery.columnCount },
    `discovered ${discovery.features.length} feature tables + 1 target table (${discovery.columnCount} columns) for ${config.pair}`,
  );
  return { discovery, rowsByTable: new Map([...features, ...targets].map((t) => [`${t.dataset}.${t.name}`, t.rows])) };
}

function sourceSettings(ctx: StageContext, duckdbBytesPerWorker: number): SourceSettings {
  const { config } = ctx;
  return config.backend === "gcp" ? { backend: "gcp", gcp: config.gcp! } : { backend: "local", warehouse: config.warehouse, duckdb: { memoryLimitBytes: duckdbBytesPerWorker, threads: 1 } };
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
    const { discovery, rowsByTable } = await discover(ctx);
    ctx.state.discovery = discovery;
    const tables = [discovery.target, ...discovery.features];
    const widths = tables.map((t) => t.columns.length + (t.role === "target" ? 1 : 0));
    const estimatedRows = (t: PlannedTable) => Math.min(rowsByTable.get(`${t.dataset}.${t.table}`) ?? 0, config.rowLimit ?? Number.POSITIVE_INFINITY);
    const targetRowsGuess = estimatedRows(discovery.target);
    const outputNames = [KEY_COLUMN, ...tables.flatMap((t) => t.columns.map((c) => c.target))];
    const rowGroupInputs = { columns: discovery.columnCount, footerBytesPerRowGroup: footerBytesPerRowGroup(outputNames, 1 + discovery.target.columns.length), rowsPerGroup: config.rowGroupRows };
    const guessPlan = targetRowsGuess > 0 ? planRowGroups(targetRowsGuess, rowGroupInputs) : undefined;
    const memory = planMemory({
      backend: config.backend,
      workers: config.maxWorkers,
      budgetBytes: config.memoryBudgetBytes,
      memoryLimitBytes: config.memoryLimitBytes,
      memoryLimitSource: config.memoryLimitSource,
      widestRowGroupBytes: guessPlan ? sliceWorkingBytes(guessPlan.rowsPerGroup, Math.max(...widths)) : 0,
      workDir: config.workDir,
      workDirInMemory: isInMemoryFilesystem(config.workDir),
      workDirFreeBytes: freeBytes(config.workDir),
    });
    log.info(
      { plan: memory },
      `memory plan: tables in flight ~${formatBytes(memory.extractionBytes)} (MEMORY_BUDGET), runtime ~${formatBytes(memory.runtimeBytes)}${memory.warehouseBytes ? `, DuckDB and read buffers ~${formatBytes(memory.warehouseBytes)}` : ""}, footers ~${formatBytes(memory.assemblyBytes)}; needs ~${formatBytes(memory.memoryNeededBytes)} of ${formatBytes(config.memoryLimitBytes)} (${config.memoryLimitSource}); the file itself is assembled in the bucket`,
    );
    for (const w of memory.warnings) log.warn({ plan: "memory" }, w);
    if (!memory.fits) throw new JobError(memory.problems.join("\n  "), { reason: "memory-plan", fix: "see the numbers above; nothing was extracted" });

    await rm(ctx.layout.parts, { recursive: true, force: true });
    const store = new PartStore(ctx.bucket, config.pair);
    const source = sourceSettings(ctx, memory.duckdbBytesPerWorker);
    const tasksPerThread = config.backend === "gcp" ? Math.max(1, Math.ceil(config.extractConcurrency / config.maxWorkers)) : 1;
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
      const targetQuery = queryFor(ctx, discovery.target);
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
        const query = queryFor(ctx, t);
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
