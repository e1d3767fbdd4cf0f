// Stage 1: discover the pair's tables, read the target first (its keys define the rows and the
// row-group plan), then align every feature table to those rows on a worker pool, staging each
// aligned table (or slice of one) in the output's bucket as a part. A part an earlier attempt
// staged is reused when its fingerprint and CRC32C still hold; nothing else is written anywhere.
// The steps are stages/extraction.ts's; discovery and the memory plan are shared with PLAN_ONLY
// (stages/discover.ts).
import { rm } from "node:fs/promises";
import type { SourceSettings } from "../src/extract/task.ts";
import { sliceWorkingBytes, type RowGroupPlan } from "../src/parts/plan.ts";
import { formatBytes } from "../src/units.ts";
import { discover, enforceMemoryPlan, planExtraction } from "./discover.ts";
import { Extraction } from "./extraction.ts";
import type { Stage, StageContext } from "./types.ts";

function sourceSettings(ctx: StageContext, duckdbBytesPerWorker: number): SourceSettings {
  const { config } = ctx;
  return config.backend === "gcp"
    ? { backend: "gcp", gcp: config.gcp }
    : { backend: "local", warehouse: config.warehouse, duckdb: { memoryLimitBytes: duckdbBytesPerWorker, threads: 1 } };
}

export const extractStage: Stage = {
  name: "extract",
  async run(ctx) {
    const { config, log } = ctx;
    const found = await discover(ctx);
    const { discovery } = found;
    ctx.state.discovery = discovery;
    const tables = [discovery.target, ...discovery.features];
    const { widths, targetRowsGuess, rowGroupInputs, guessPlan, memory } = planExtraction(config, found);
    enforceMemoryPlan(ctx, memory);

    await rm(ctx.layout.parts, { recursive: true, force: true });
    const run = new Extraction(ctx, sourceSettings(ctx, memory.duckdbBytesPerWorker));
    try {
      const targetEstimate = guessPlan ? sliceWorkingBytes(targetRowsGuess, widths[0]!) : config.memoryBudgetBytes;
      const read = await run.readTarget(discovery, rowGroupInputs, targetEstimate);
      const { targetSpec, featureWork } = run.planParts(discovery, read, widths);
      await run.reuse([targetSpec, ...featureWork.map((w) => w.spec)]);
      await run.stageTarget(targetSpec, read);
      const extracted = await run.extractFeatures(
        featureWork.filter((w) => !run.staged.has(w.spec.fingerprint)),
        tables.length,
      );

      const { plan, rowGroupRows, target } = read;
      const parts = [targetSpec, ...featureWork.map((w) => w.spec)].map((s) => run.staged.get(s.fingerprint)!);
      const gcpReads = config.backend === "gcp" ? run.reads : undefined;
      ctx.state.extraction = {
        plan,
        rowGroupRows,
        target: { rows: plan.rows, keysSha256: target.keysSha256, keyStrictlyIncreasing: true },
        parts,
        tables: run.outcomes(tables, parts),
        ...(gcpReads ? { reads: gcpReads } : {}),
      };
      if (gcpReads) {
        log.info(
          { reads: gcpReads },
          `BigQuery reads: ${gcpReads.tableReads} read sessions on the tables themselves (${gcpReads.streams} streams), ${gcpReads.queryJobs} extraction query jobs; the sessions estimate ${formatBytes(gcpReads.estimatedBytesScanned)} scanned`,
        );
      }
      return {
        tables: tables.length,
        parts: parts.length,
        extracted: extracted + (parts[0]!.reused ? 0 : 1),
        reused: parts.filter((p) => p.reused).length,
        skipped: discovery.skipped.length,
        targetRows: plan.rows,
        rowGroups: plan.groups,
        stagedBytes: parts.reduce((n, p) => n + p.chunks.bytes, 0),
        ...(gcpReads
          ? {
              tableReads: gcpReads.tableReads,
              queryJobs: gcpReads.queryJobs,
              readStreams: gcpReads.streams,
              estimatedBytesScanned: gcpReads.estimatedBytesScanned,
            }
          : {}),
        ...(run.retries ? { retries: run.retries } : {}),
      } satisfies Record<string, unknown>;
    } finally {
      await run.destroy();
    }
  },
};

export type { RowGroupPlan };
