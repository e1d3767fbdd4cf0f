// Runs the stages in order, timing each, and turns the outcome into an exit code:
// 0 only when every stage, the verified upload included, has succeeded.
import { performance } from "node:perf_hooks";
import type { RunState, Stage, StageContext } from "../stages/types.ts";
import type { Bucket } from "./bucket/port.ts";
import type { Config } from "./config.ts";
import { JobError, describeError } from "./errors.ts";
import { EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK } from "./exit-codes.ts";
import { layoutFor } from "./layout.ts";
import type { Logger } from "./log.ts";
import { formatBytes, formatSeconds } from "./units.ts";
import type { Warehouse } from "./warehouse/port.ts";

export interface RunOptions {
  config: Readonly<Config>;
  log: Logger;
  warehouse: Warehouse;
  bucket: Bucket;
  stages: readonly Stage[];
  signal: AbortSignal;
}

export interface RunOutcome {
  exitCode: number;
  state: RunState;
  failedStage?: string;
  error?: unknown;
}

export async function runPipeline(opts: RunOptions): Promise<RunOutcome> {
  const { config, log } = opts;
  const state: RunState = { durations: {} };
  const ctx: StageContext = {
    config,
    log,
    warehouse: opts.warehouse,
    bucket: opts.bucket,
    layout: layoutFor(config.workDir, config.pair),
    signal: opts.signal,
    now: () => performance.now(),
    state,
  };
  const jobStarted = performance.now();
  for (const stage of opts.stages) {
    const stageLog = log.child({ stage: stage.name });
    const started = performance.now();
    stageLog.info(`stage ${stage.name}: started`);
    try {
      if (opts.signal.aborted) throw opts.signal.reason;
      const figures = await stage.run({ ...ctx, log: stageLog });
      const seconds = (performance.now() - started) / 1000;
      state.durations[stage.name] = Number(seconds.toFixed(3));
      stageLog.info({ seconds: state.durations[stage.name], ...figures }, `stage ${stage.name}: done in ${formatSeconds(seconds)}`);
    } catch (error) {
      const seconds = (performance.now() - started) / 1000;
      state.durations[stage.name] = Number(seconds.toFixed(3));
      const interrupted = opts.signal.aborted;
      const job = error instanceof JobError ? error : undefined;
      stageLog.error(
        {
          seconds: state.durations[stage.name],
          reason: interrupted ? "interrupted" : (job?.reason ?? "unexpected"),
          fix: job?.fix,
          err: job ? undefined : error,
        },
        `stage ${stage.name} failed: ${interrupted ? `interrupted (${String(opts.signal.reason)})` : describeError(error)}`,
      );
      log.error(
        { durations: state.durations, exitCode: interrupted ? EXIT_INTERRUPTED : EXIT_FAILED },
        `job failed in stage ${stage.name}; nothing was uploaded unless the upload stage completed`,
      );
      return { exitCode: interrupted ? EXIT_INTERRUPTED : EXIT_FAILED, state, failedStage: stage.name, error };
    }
  }
  const total = (performance.now() - jobStarted) / 1000;
  const summary = Object.entries(state.durations)
    .map(([name, s]) => `${name} ${formatSeconds(s)}`)
    .join(", ");
  log.info(
    {
      durations: state.durations,
      totalSeconds: Number(total.toFixed(3)),
      rows: state.validation?.rows,
      columns: state.validation?.columns,
      output: state.uploaded?.training.uri,
      report: state.report?.uri,
      bytes: state.uploaded?.training.bytes,
      parts: state.extraction?.parts.length,
      composeCalls: state.uploaded?.composeCalls,
      memoryBudgetBytes: config.memoryBudgetBytes,
    },
    `done: ${state.uploaded?.training.uri} (${state.validation?.rows} rows x ${state.validation?.columns} columns, ${formatBytes(state.uploaded?.training.bytes ?? 0)}) in ${formatSeconds(total)}: ${summary}${state.report ? `; report ${state.report.uri}` : ""}`,
  );
  return { exitCode: EXIT_OK, state };
}
