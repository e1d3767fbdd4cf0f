// The loop that builds this task's pairs one after another (config.ts selects them,
// src/config/pairs.ts): each pair's run gets its own configuration and logger, and the task's
// exit code says whether every pair was built. Its only effects come from the `build` it is given.
import type { Config } from "./config.ts";
import { EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK } from "./exit-codes.ts";
import type { Logger } from "./log.ts";

/** The configuration of one pair's run: the same settings, that pair only. */
export function configForPair(config: Readonly<Config>, pair: string): Readonly<Config> {
  return Object.freeze({ ...config, pair, pairs: Object.freeze([pair]) });
}

export interface PairOutcome {
  exitCode: number;
  failedStage?: string | undefined;
}

export interface TaskPairsOptions {
  config: Readonly<Config>;
  log: Logger;
  signal: AbortSignal;
  /** Builds one pair: runs the pipeline with that pair's config and logger. */
  build: (config: Readonly<Config>, log: Logger) => Promise<PairOutcome>;
}

/**
 * Builds this task's pairs one after another. A failed pair does not stop the next one (their
 * data are independent); an interruption does. Returns the process exit code: 0 when every
 * pair was built, 130 when interrupted, otherwise 1 (Cloud Run then retries the task).
 */
export async function buildTaskPairs(opts: TaskPairsOptions): Promise<number> {
  const { config, log } = opts;
  const run = config.cloudRun;
  if (config.pairs.length === 1) {
    if (config.pairSource === "PAIRS") {
      log.info(
        { pairs: config.pairs, pairsListed: config.pairsListed },
        `task ${run.taskIndex} of ${run.taskCount} builds ${config.pair} (from PAIRS, ${config.pairsListed} listed)`,
      );
    }
    return (await opts.build(config, log)).exitCode;
  }
  log.info(
    { pairs: config.pairs, pairsListed: config.pairsListed },
    `task ${run.taskIndex} of ${run.taskCount} builds ${config.pairs.length} pairs one after another: ${config.pairs.join(", ")} (from PAIRS, ${config.pairsListed} listed)`,
  );
  const results: Array<{ pair: string; exitCode: number; failedStage?: string | undefined }> = [];
  for (const pair of config.pairs) {
    if (opts.signal.aborted) break;
    const pairLog = log.child({ pair });
    let outcome: PairOutcome;
    try {
      outcome = await opts.build(configForPair(config, pair), pairLog);
    } catch (err) {
      if (opts.signal.aborted) throw err;
      pairLog.error({ err }, `${pair}: failed before its stages ran`);
      outcome = { exitCode: EXIT_FAILED };
    }
    results.push({ pair, ...outcome });
    if (outcome.exitCode === EXIT_INTERRUPTED) break;
  }
  const built = results.filter((r) => r.exitCode === EXIT_OK).map((r) => r.pair);
  const failed = results.filter((r) => r.exitCode !== EXIT_OK);
  const notRun = config.pairs.slice(results.length);
  const interrupted = opts.signal.aborted || results.some((r) => r.exitCode === EXIT_INTERRUPTED);
  const exitCode = interrupted ? EXIT_INTERRUPTED : failed.length > 0 ? EXIT_FAILED : EXIT_OK;
  const parts = [
    `built ${built.length} of ${config.pairs.length}${built.length > 0 ? ` (${built.join(", ")})` : ""}`,
    ...(failed.length > 0 ? [`failed: ${failed.map((f) => `${f.pair}${f.failedStage ? ` in ${f.failedStage}` : ""}`).join(", ")}`] : []),
    ...(notRun.length > 0 ? [`not started: ${notRun.join(", ")}`] : []),
  ];
  (exitCode === EXIT_OK ? log.info.bind(log) : log.error.bind(log))(
    { built, failed: failed.map((f) => f.pair), notStarted: notRun, exitCode },
    `task ${run.taskIndex} of ${run.taskCount}: ${parts.join("; ")}`,
  );
  return exitCode;
}
