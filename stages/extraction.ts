// The extract stage's working parts (stages/extract.ts runs them in order): the pool and the part
// store of one run, the target read first, the parts planned from its keys, what an earlier attempt
// staged, then every feature part aligned on the pool and staged as it lands, each table timed.
import { rm } from "node:fs/promises";
import path from "node:path";
import { tablesPerThread } from "../src/concurrency.ts";
import { JobError, describeError } from "../src/errors.ts";
import { rowGroupSizes } from "../src/extract/part-writer.ts";
import { ExtractionPool, isFailure } from "../src/extract/pool.ts";
import type { PartTask, PartWriting, SourceSettings, TargetResult, WorkerFailure } from "../src/extract/task.ts";
import type { ReadFigures } from "../src/warehouse/port.ts";
import type { Discovery } from "../src/discovery.ts";
import { partFingerprint } from "../src/parts/fingerprint.ts";
import { planRowGroups, planSlices, sliceWorkingBytes, type RowGroupInputs, type RowGroupPlan } from "../src/parts/plan.ts";
import { PartStore, type PartSpec, type StagedPart } from "../src/parts/store.ts";
import { Progress, progressMessage } from "../src/progress.ts";
import { formatBytes } from "../src/units.ts";
import { queryFor } from "./discover.ts";
import type { BigQueryReads, StageContext, TableOutcome } from "./types.ts";

const FEATURE_WRITING: Omit<PartWriting, "rowsPerGroup"> = { minMax: false };

/** One feature part to make: what it is, the worker's task, and the memory it is expected to hold. */
export interface PartWork {
  spec: PartSpec;
  task: PartTask;
  estimate: number;
}

/** The target as read: its result, the row-group plan its row count gives, and its keys shared with the workers. */
export interface TargetRead {
  target: TargetResult;
  plan: RowGroupPlan;
  rowGroupRows: number[];
  keys: BigInt64Array;
  startedAt: number;
}

function taskFailure(failure: WorkerFailure): JobError {
  return new JobError(failure.message, { reason: failure.reason, fix: failure.fix, retryable: failure.retryable });
}

function describePlan(plan: RowGroupPlan): string {
  const sizes = `footer ~${formatBytes(plan.footerEstimateBytes)}, row groups of ~${formatBytes(plan.decodedGroupBytes)} decoded`;
  const why =
    plan.limitedBy === "both"
      ? `footer ~${formatBytes(plan.footerEstimateBytes)} and row groups of ~${formatBytes(plan.decodedGroupBytes)} decoded, both within their limits`
      : plan.limitedBy === "footer"
        ? `the footer limit wins: ~${formatBytes(plan.footerEstimateBytes)} of footer, row groups of ~${formatBytes(plan.decodedGroupBytes)} decoded (above the 512 MiB aim)`
        : `as ROW_GROUP_ROWS asks (${sizes})`;
  return `${plan.rows} training rows in ${plan.groups} row groups of ${plan.rowsPerGroup} rows: ${why}`;
}

export class Extraction {
  readonly pool: ExtractionPool;
  readonly store: PartStore;
  /** Parts in the bucket by fingerprint: reused from an earlier attempt or staged by this one. */
  readonly staged = new Map<string, StagedPart>();
  readonly reads: BigQueryReads = { tableReads: 0, queryJobs: 0, streams: 0, estimatedBytesScanned: 0 };
  retries = 0;
  private readonly ctx: StageContext;
  private readonly source: SourceSettings;
  private readonly stop = new AbortController();
  private readonly signal: AbortSignal;
  private readonly started: number;
  /** Per table (plan index): when this run first read it and when its last part was staged. */
  private readonly timing = new Map<number, { start: number; end: number }>();

  constructor(ctx: StageContext, source: SourceSettings) {
    const { config, log } = ctx;
    this.ctx = ctx;
    this.source = source;
    this.started = ctx.now();
    this.signal = AbortSignal.any([ctx.signal, this.stop.signal]);
    this.store = new PartStore(ctx.bucket, config.pair);
    const tasksPerThread = tablesPerThread(config.backend, config.extractConcurrency, config.maxWorkers);
    this.pool = new ExtractionPool({
      threads: config.maxWorkers,
      tasksPerThread,
      budgetBytes: config.memoryBudgetBytes,
      signal: this.signal,
      faults: config.faults,
      onRetry: (task, attempt, delayMs, failure) => {
        this.retries += 1;
        log.warn({ table: task.query.table, attempt, delayMs, reason: failure.reason }, `retrying ${task.query.table}: ${failure.message}`);
      },
    });
    log.info(
      { workers: config.maxWorkers, source: config.maxWorkersSource, tasksPerWorker: tasksPerThread, budgetBytes: config.memoryBudgetBytes },
      `extraction pool: ${config.maxWorkers} workers (from ${config.maxWorkersSource}) x ${tasksPerThread} tables each, within MEMORY_BUDGET ${formatBytes(config.memoryBudgetBytes)} (${config.memoryBudgetSource})`,
    );
  }

  /** The target first: its keys are the rows, its row count the row-group plan. */
  async readTarget(discovery: Discovery, rowGroupInputs: RowGroupInputs, estimate: number): Promise<TargetRead> {
    await this.pool.reserve(estimate);
    const startedAt = this.ctx.now();
    const query = queryFor(this.ctx.config, discovery.target);
    const got = await this.pool.run({ kind: "target", source: this.source, query, rowGroupInputs, outDir: this.ctx.layout.parts }, estimate);
    if (isFailure(got)) throw taskFailure(got);
    const target = got as TargetResult;
    this.countRead(target.read);
    const plan = planRowGroups(target.keys.length, rowGroupInputs);
    if (plan.rowsPerGroup !== target.rowsPerGroup)
      throw new Error(`row-group plans disagree: ${plan.rowsPerGroup} in the main thread, ${target.rowsPerGroup} in the worker`);
    this.ctx.log.info(
      {
        rows: plan.rows,
        rowsPerGroup: plan.rowsPerGroup,
        rowGroups: plan.groups,
        footerEstimateBytes: plan.footerEstimateBytes,
        decodedGroupBytes: plan.decodedGroupBytes,
        limitedBy: plan.limitedBy,
      },
      describePlan(plan),
    );
    const keys = new BigInt64Array(new SharedArrayBuffer(target.keys.byteLength));
    keys.set(target.keys);
    return { target, plan, rowGroupRows: rowGroupSizes(plan.rows, plan.rowsPerGroup), keys, startedAt };
  }

  /** Every part of the file: the target's, then each feature table's slices, named by fingerprint. */
  planParts(discovery: Discovery, read: TargetRead, widths: readonly number[]): { targetSpec: PartSpec; featureWork: PartWork[] } {
    const { config, layout } = this.ctx;
    const { plan, rowGroupRows, keys, target } = read;
    const identity = { keysSha256: target.keysSha256, rowsPerGroup: plan.rowsPerGroup, rows: plan.rows };
    const targetQuery = queryFor(config, discovery.target);
    const targetSpec: PartSpec = {
      fingerprint: partFingerprint({
        ...identity,
        query: targetQuery,
        tableVersion: discovery.target.version,
        firstRowGroup: 0,
        endRowGroup: plan.groups,
        writing: { rowsPerGroup: plan.rowsPerGroup, minMax: true },
      }),
      table: 0,
      label: `${discovery.target.dataset}.${discovery.target.table}`,
      firstRowGroup: 0,
      endRowGroup: plan.groups,
      rowGroupRows,
    };
    const writing: PartWriting = { ...FEATURE_WRITING, rowsPerGroup: plan.rowsPerGroup };
    const share = config.memoryBudgetBytes / config.maxWorkers;
    const featureWork = discovery.features.flatMap((t, i) => {
      const query = queryFor(config, t);
      return planSlices(plan, widths[i + 1]!, share).map((slice): PartWork => {
        const spec: PartSpec = {
          fingerprint: partFingerprint({
            ...identity,
            query,
            tableVersion: t.version,
            firstRowGroup: slice.firstRowGroup,
            endRowGroup: slice.endRowGroup,
            writing,
          }),
          table: i + 1,
          label: `${t.dataset}.${t.table}`,
          firstRowGroup: slice.firstRowGroup,
          endRowGroup: slice.endRowGroup,
          rowGroupRows: rowGroupRows.slice(slice.firstRowGroup, slice.endRowGroup),
        };
        const bounds = {
          afterKey: slice.firstRow === 0 ? undefined : keys[slice.firstRow - 1],
          throughKey: slice.endRow === plan.rows ? undefined : keys[slice.endRow - 1],
        };
        const outPath = path.join(layout.parts, `${spec.fingerprint}.parquet`);
        const task: PartTask = {
          kind: "part",
          source: this.source,
          query,
          keys,
          slice: { ...slice, ...bounds },
          writing,
          fingerprint: spec.fingerprint,
          outPath,
        };
        return { spec, task, estimate: sliceWorkingBytes(slice.endRow - slice.firstRow, widths[i + 1]!) };
      });
    });
    return { targetSpec, featureWork };
  }

  /** What an earlier attempt left in the bucket: parts whose fingerprint and CRC32C still hold are reused. */
  async reuse(specs: readonly PartSpec[]): Promise<void> {
    const { log } = this.ctx;
    const present = await this.store.inventory();
    await Promise.all(
      specs
        .filter((s) => present.has(s.fingerprint))
        .map(async (spec) => {
          const found = await this.store.find(spec);
          const rowGroups = `${spec.firstRowGroup}-${spec.endRowGroup}`;
          if ("problem" in found)
            log.warn(
              { table: spec.label, rowGroups, part: spec.fingerprint },
              `part of ${spec.label} (row groups ${rowGroups}) in the bucket is ${found.problem}: extracting it again`,
            );
          else this.staged.set(spec.fingerprint, found);
        }),
    );
    if (this.staged.size > 0)
      log.info(
        { reused: this.staged.size, store: this.store.location },
        `reusing ${this.staged.size} parts staged by an earlier attempt in ${this.store.location}`,
      );
  }

  /** Stages the target's part unless an earlier attempt did. */
  async stageTarget(spec: PartSpec, read: TargetRead): Promise<void> {
    const { target, plan } = read;
    if (!this.staged.has(spec.fingerprint)) await this.stageHeld(spec, target.part, plan.rows);
    else await rm(target.part.path, { force: true });
    this.timed(0, read.startedAt);
  }

  /** Every feature part not staged yet: aligned on the pool, staged as it lands. Throws naming every table that failed. */
  async extractFeatures(pending: readonly PartWork[], tableCount: number): Promise<number> {
    const { ctx } = this;
    const failures: WorkerFailure[] = [];
    let stagingFailure: unknown;
    const progress = new Progress({
      total: pending.length,
      now: ctx.now,
      emit: (figures) =>
        ctx.log.info(
          { progress: figures, reused: this.staged.size - progress.done, heldBytes: this.pool.reservedBytes },
          progressMessage("extracted", figures),
        ),
    });
    const inFlight = new Set<Promise<void>>();
    try {
      for (const work of pending) {
        if (this.signal.aborted) break;
        await this.pool.reserve(work.estimate).catch(() => undefined);
        if (this.signal.aborted) break;
        const p = this.extractOne(work, failures, progress).catch((err: unknown) => {
          if (this.signal.aborted) return;
          if (err instanceof StagingFailed) {
            stagingFailure ??= err.cause;
            this.stop.abort(err.cause);
          } else
            failures.push({ failed: true, table: work.spec.label, message: describeError(err), reason: "extract-failed", fix: undefined, retryable: false });
        });
        inFlight.add(p);
        void p.finally(() => inFlight.delete(p));
      }
      await Promise.allSettled([...inFlight]);
    } finally {
      progress.finish(!this.signal.aborted);
    }
    if (this.signal.aborted) {
      ctx.log.warn(
        { extracted: progress.done, reused: this.staged.size - progress.done },
        `extraction stopped: ${this.staged.size} parts are staged in ${this.store.location} for the next attempt; ${pending.length - progress.done} not extracted`,
      );
      throw ctx.signal.aborted ? ctx.signal.reason : (stagingFailure ?? this.signal.reason);
    }
    if (failures.length > 0) {
      const names = [...new Set(failures.map((f) => f.table))];
      const first = failures[0]!;
      throw new JobError(
        `${names.length} of ${tableCount} tables failed to extract: ${names.slice(0, 20).join(", ")}${names.length > 20 ? ", ..." : ""}; first error: ${first.message}`,
        {
          reason: first.reason,
          fix: first.fix ?? "see the errors logged for each table above; the parts already staged are reused on the next run",
        },
      );
    }
    return progress.done;
  }

  /** Each table's rows, parts and (when this run read it) its timing, in plan order. */
  outcomes(tables: Discovery["features"], parts: readonly StagedPart[]): TableOutcome[] {
    const seconds = (ms: number) => Number((ms / 1000).toFixed(3));
    return tables.map((t, i) => {
      const own = parts.filter((p) => p.table === i);
      const time = this.timing.get(i);
      return {
        table: `${t.dataset}.${t.table}`,
        version: t.version ?? null,
        rows: own.reduce((n, p) => n + p.sourceRows, 0),
        parts: own.length,
        reusedParts: own.filter((p) => p.reused).length,
        ...(time ? { startedSeconds: seconds(time.start - this.started), seconds: seconds(time.end - time.start) } : {}),
      };
    });
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }

  private async extractOne(work: PartWork, failures: WorkerFailure[], progress: Progress): Promise<void> {
    const startedAt = this.ctx.now();
    const result = await this.pool.run(work.task, work.estimate);
    if (isFailure(result)) {
      failures.push(result);
      this.ctx.log.error({ table: work.spec.label, reason: result.reason }, result.message);
      return;
    }
    if (result.kind !== "part") throw new Error("a part task returned a target result");
    if (result.retries) this.retries += result.retries;
    this.countRead(result.read);
    try {
      await this.stageHeld(work.spec, result.part, result.sourceRows);
    } catch (err) {
      throw new StagingFailed(err);
    }
    this.timed(work.spec.table, startedAt);
    progress.tick();
    const rowGroups = `${work.spec.firstRowGroup}-${work.spec.endRowGroup}`;
    this.ctx.log.debug(
      { table: work.spec.label, part: work.spec.fingerprint, rowGroups, rows: result.sourceRows, seconds: result.seconds },
      `extracted ${work.spec.label} row groups ${rowGroups} as part ${work.spec.fingerprint.slice(0, 12)}`,
    );
  }

  /** The part file stays in WORK_DIR (memory, on Cloud Run) until it is staged: its bytes are held in the budget meanwhile. */
  private async stageHeld(spec: PartSpec, part: TargetResult["part"], sourceRows: number): Promise<void> {
    this.pool.hold(part.fileBytes);
    try {
      this.staged.set(spec.fingerprint, await this.store.stage(spec, part, sourceRows));
    } finally {
      this.pool.release(part.fileBytes, false);
    }
  }

  private timed(table: number, start: number): void {
    const t = this.timing.get(table);
    this.timing.set(table, { start: Math.min(t?.start ?? start, start), end: Math.max(t?.end ?? 0, this.ctx.now()) });
  }

  /** Adds one read's figures to the run's (BACKEND=gcp only: DuckDB reads report none). */
  private countRead(read: ReadFigures | undefined): void {
    if (!read) return;
    if (read.route === "table") this.reads.tableReads += 1;
    else this.reads.queryJobs += 1;
    this.reads.streams += read.streams;
    this.reads.estimatedBytesScanned += read.bytesScanned;
  }
}

/** A part that could not be staged: it stops the whole extraction (the bucket is failing), unlike a table's failure. */
class StagingFailed extends Error {
  constructor(cause: unknown) {
    super(describeError(cause), { cause });
  }
}
