// Which pairs this process builds, and the loop that builds them one after another.
//
// An execution builds one pair (TARGET_PAIR), or an execution of N Cloud Run tasks splits a list
// of pairs (PAIRS) between its tasks: task i builds the pairs at positions i, i+N, i+2N, ... of
// the list, so with one task per pair task i builds the i-th pair. The rules, checked before any
// work (a pair is never defaulted, and no task may silently build nothing or a pair twice):
//   - exactly one of TARGET_PAIR and PAIRS;
//   - PAIRS: pairs separated by spaces or commas, or `all` (the 28 pairs); no repeats;
//   - TARGET_PAIR with CLOUD_RUN_TASK_COUNT > 1 is refused: every task would build the same pair;
//   - PAIRS with more tasks than pairs is refused: the extra tasks would build nothing;
//   - CLOUD_RUN_TASK_INDEX must be below CLOUD_RUN_TASK_COUNT.
// Pure functions of the values config.ts hands over; only `buildTaskPairs` has effects, and those
// come from the `build` function it is given.
import type { Config } from "./config.ts";
import { PAIRS } from "./constants.ts";
import type { Logger } from "./log.ts";

export interface PairSelection {
  /** The pairs this task builds, in list order; empty when there are problems. */
  pairs: string[];
  source: "TARGET_PAIR" | "PAIRS";
  /** How many pairs PAIRS listed (1 for TARGET_PAIR). */
  listed: number;
  /** One line per problem, `NAME: expected ... (got ...)`, like every configuration problem. */
  problems: string[];
}

type Env = Readonly<Record<string, string | undefined>>;

const PAIR_SHAPE = /^[a-z]{6}$/;
const ALL = "all";

const given = (v: string | undefined): string | undefined => (v === undefined || v.trim() === "" ? undefined : v.trim());
const shown = (v: string | undefined): string => (v === undefined ? "nothing" : JSON.stringify(v));

/** Problems with one pair name, or undefined when it is one of the 28. */
export function pairProblem(name: string, value: string): string | undefined {
  if (!PAIR_SHAPE.test(value)) {
    const hint = /^[A-Za-z]{6}$/.test(value) ? ` (did you mean ${value.toLowerCase()}?)` : "";
    return `${name}: expected six lower-case letters naming a pair, e.g. eurusd${hint} (got ${JSON.stringify(value)})`;
  }
  if (!PAIRS.includes(value)) return `${name}: expected one of ${PAIRS.join(" ")} (got ${JSON.stringify(value)})`;
  return undefined;
}

/** Task i of n takes positions i, i+n, i+2n, ... of the list. */
export function pairsForTask(list: readonly string[], taskIndex: number, taskCount: number): string[] {
  return list.filter((_, position) => position % taskCount === taskIndex);
}

/** Parses PAIRS: `all`, or pair names separated by spaces or commas. */
export function parsePairList(raw: string): { pairs: string[]; problems: string[] } {
  if (raw.trim().toLowerCase() === ALL) return { pairs: [...PAIRS], problems: [] };
  const names = raw.split(/[\s,]+/).filter((n) => n !== "");
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const name of names) {
    const problem = pairProblem("PAIRS", name);
    if (problem) problems.push(problem);
    else if (seen.has(name)) problems.push(`PAIRS: expected each pair once (got ${name} twice in ${JSON.stringify(raw)})`);
    seen.add(name);
  }
  return { pairs: problems.length === 0 ? names : [], problems };
}

/**
 * The pairs this task builds, from TARGET_PAIR or PAIRS and Cloud Run's task index and count.
 * CLOUD_RUN_TASK_INDEX/COUNT that are not whole numbers are config.ts's to report; here they
 * count as 0 and 1.
 */
export function selectTaskPairs(env: Env): PairSelection {
  const targetPair = env.TARGET_PAIR;
  const pairsRaw = given(env.PAIRS);
  const wholeNumber = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v.trim()) ? Number(v.trim()) : undefined);
  const taskCount = wholeNumber(env.CLOUD_RUN_TASK_COUNT) ?? 1;
  const taskIndex = wholeNumber(env.CLOUD_RUN_TASK_INDEX) ?? 0;
  const problems: string[] = [];
  if (taskCount < 1) problems.push(`CLOUD_RUN_TASK_COUNT: expected at least 1 (got ${shown(env.CLOUD_RUN_TASK_COUNT)})`);
  else if (taskIndex >= taskCount) {
    problems.push(`CLOUD_RUN_TASK_INDEX: expected a task index below CLOUD_RUN_TASK_COUNT=${taskCount} (got ${shown(env.CLOUD_RUN_TASK_INDEX)})`);
  }

  if (pairsRaw !== undefined) {
    if (given(targetPair) !== undefined) {
      problems.push(
        `TARGET_PAIR/PAIRS: expected one of them, not both (got TARGET_PAIR=${JSON.stringify(targetPair)} and PAIRS=${JSON.stringify(pairsRaw)}); ` +
          "set TARGET_PAIR to build one pair, or PAIRS to split a list of pairs across the execution's tasks",
      );
      return { pairs: [], source: "PAIRS", listed: 0, problems };
    }
    const list = parsePairList(pairsRaw);
    problems.push(...list.problems);
    if (list.problems.length === 0 && list.pairs.length === 0) {
      problems.push(`PAIRS: expected pairs separated by spaces or commas, or "all" (got ${JSON.stringify(env.PAIRS)})`);
    }
    if (list.pairs.length > 0 && taskCount > list.pairs.length) {
      problems.push(
        `CLOUD_RUN_TASK_COUNT: expected at most one task per pair listed in PAIRS (${list.pairs.length}) (got ${taskCount}); ` +
          `tasks ${list.pairs.length}..${taskCount - 1} would build nothing: execute with --tasks ${list.pairs.length} or fewer`,
      );
    }
    const pairs = problems.length === 0 ? pairsForTask(list.pairs, taskIndex, taskCount) : [];
    return { pairs, source: "PAIRS", listed: list.pairs.length, problems };
  }

  // TARGET_PAIR: required, never defaulted (a default once made a job silently build the wrong pair).
  if (targetPair === undefined || targetPair.trim() === "") {
    problems.push(
      `TARGET_PAIR: expected one of the 28 pairs in lower case, e.g. eurusd; set it with --update-env-vars TARGET_PAIR=<pair> ` +
        `(or set PAIRS to split several pairs across the tasks of one execution) (got ${shown(targetPair)})`,
    );
  } else {
    const problem = pairProblem("TARGET_PAIR", targetPair);
    if (problem) problems.push(problem);
    else if (taskCount > 1) {
      problems.push(
        `CLOUD_RUN_TASK_COUNT: expected 1 with TARGET_PAIR, or PAIRS to give each task its own pairs (got ${taskCount}); ` +
          `every task would build ${targetPair}: execute with --tasks 1, or with --update-env-vars PAIRS=<pairs>`,
      );
    }
  }
  return { pairs: problems.length === 0 ? [targetPair!] : [], source: "TARGET_PAIR", listed: 1, problems };
}

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
      log.info({ pairs: config.pairs, pairsListed: config.pairsListed }, `task ${run.taskIndex} of ${run.taskCount} builds ${config.pair} (from PAIRS, ${config.pairsListed} listed)`);
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
      outcome = { exitCode: 1 };
    }
    results.push({ pair, ...outcome });
    if (outcome.exitCode === 130) break;
  }
  const built = results.filter((r) => r.exitCode === 0).map((r) => r.pair);
  const failed = results.filter((r) => r.exitCode !== 0);
  const notRun = config.pairs.slice(results.length);
  const interrupted = opts.signal.aborted || results.some((r) => r.exitCode === 130);
  const exitCode = interrupted ? 130 : failed.length > 0 ? 1 : 0;
  const parts = [
    `built ${built.length} of ${config.pairs.length}${built.length > 0 ? ` (${built.join(", ")})` : ""}`,
    ...(failed.length > 0 ? [`failed: ${failed.map((f) => `${f.pair}${f.failedStage ? ` in ${f.failedStage}` : ""}`).join(", ")}`] : []),
    ...(notRun.length > 0 ? [`not started: ${notRun.join(", ")}`] : []),
  ];
  (exitCode === 0 ? log.info.bind(log) : log.error.bind(log))(
    { built, failed: failed.map((f) => f.pair), notStarted: notRun, exitCode },
    `task ${run.taskIndex} of ${run.taskCount}: ${parts.join("; ")}`,
  );
  return exitCode;
}
