// Stage 2: merge the checkpoints into one wide parquet file under the memory budget.
import { progressFigures, progressMessage } from "../src/extract/progress.ts";
import { formatBytes } from "../src/units.ts";
import type { Stage } from "./types.ts";

const RSS_SAMPLE_MS = 200;
const PROGRESS_EVERY_MS = 5_000;

export const mergeStage: Stage = {
  name: "merge",
  async run(ctx) {
    const { config, log, state } = ctx;
    const checkpoints = state.checkpoints;
    const discovery = state.discovery;
    if (!checkpoints || !discovery) throw new Error("merge needs the extract stage's checkpoints");

    let peakRss = process.memoryUsage.rss();
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
    }, RSS_SAMPLE_MS).unref();
    const started = ctx.now();
    let lastProgress = started;
    let merged = 0;
    try {
      // Loaded here, not at start-up: nodejs-polars is the heaviest module the merge needs, and
      // a task spends its first minutes extracting (cold start, see src/startup.ts).
      const { mergeCheckpoints } = await import("../src/merge/merge.ts");
      const { chooseScratch, sweepStaleScratch } = await import("../src/merge/scratch.ts");
      for (const dir of sweepStaleScratch()) log.warn({ dir }, `removed ${dir}, left by a merge that was killed`);
      const scratch = chooseScratch({ workDirParts: ctx.layout.mergeParts, pair: config.pair, memoryLimitBytes: config.memoryLimitBytes, budgetBytes: config.memoryBudgetBytes });
      log.info({ scratch }, `aligned tables wait in ${scratch.dir}: ${scratch.reason}`);
      const result = await mergeCheckpoints({
        target: checkpoints.target.path,
        features: checkpoints.features.map((c) => ({ table: c.table, path: c.path })),
        columns: discovery.columnCount,
        budgetBytes: config.memoryBudgetBytes,
        partsDir: scratch.dir,
        maxWaitingBytes: scratch.maxWaitingBytes,
        outPath: ctx.layout.output,
        keyValueMetadata: { "bqx.pair": config.pair, "bqx.tables": String(checkpoints.features.length + 1) },
        signal: ctx.signal,
        workers: config.maxWorkers,
        onPlan: (plan, rows, strategy) =>
          log.info(
            { rows, strategy, rowsPerRange: plan.rowsPerRange, ranges: plan.ranges.length, budgetBytes: config.memoryBudgetBytes, estimatedPeakBytes: plan.estimatedPeakBytes },
            strategy === "append"
              ? `merging ${rows} rows x ${discovery.columnCount} columns: aligning each table to the target rows (up to ${config.maxWorkers} at once, within the budget) and appending its column chunks to the output, in ${plan.ranges.length} row groups of ${plan.rowsPerRange} rows (budget ${formatBytes(config.memoryBudgetBytes)} from ${config.memoryBudgetSource})`
              : `merging ${rows} rows x ${discovery.columnCount} columns in ${plan.ranges.length} ranges of ${plan.rowsPerRange} rows (budget ${formatBytes(config.memoryBudgetBytes)} from ${config.memoryBudgetSource}; the widest table does not fit it whole)`,
          ),
        onProgress: (done, total) => {
          merged = done;
          peakRss = Math.max(peakRss, process.memoryUsage.rss());
          const now = ctx.now();
          if (done < total && now - lastProgress < PROGRESS_EVERY_MS) return;
          lastProgress = now;
          const figures = progressFigures(done, total, now - started);
          log.info({ progress: figures, rssBytes: process.memoryUsage.rss() }, progressMessage("merged", figures));
        },
      });
      peakRss = Math.max(peakRss, process.memoryUsage.rss());
      state.merged = { path: ctx.layout.output, tablesMerged: result.tablesMerged, rows: result.rows, columns: result.columns, rowGroups: result.rowGroups, bytes: result.bytes, peakRssBytes: peakRss };
      return { strategy: result.strategy, workers: result.workers, tables: result.tablesMerged, rows: result.rows, columns: result.columns, rowGroups: result.rowGroups, bytes: result.bytes, peakRssBytes: peakRss, budgetBytes: config.memoryBudgetBytes };
    } catch (err) {
      if (ctx.signal.aborted) {
        log.warn({ merged, tables: checkpoints.features.length + 1 }, `merge stopped after ${merged} of ${checkpoints.features.length + 1} tables; the partial output is discarded, the checkpoints are kept for the next attempt`);
      }
      throw err;
    } finally {
      clearInterval(sampler);
    }
  },
};
