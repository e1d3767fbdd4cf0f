// Which pairs this process builds (config owns it: it is read from the environment once, with the
// other variables, and its problems are reported with theirs).
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
import { PAIRS } from "../constants.ts";

export interface PairSelection {
  /** The pairs this task builds, in list order; empty when there are problems. */
  pairs: string[];
  source: "TARGET_PAIR" | "PAIRS";
  /** How many pairs PAIRS listed (1 for TARGET_PAIR). */
  listed: number;
  /** One line per problem, `NAME: expected ... (got ...)`, like every configuration problem. */
  problems: string[];
}

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

/** What selects the pairs: the two variables as given, and Cloud Run's task index and count as parsed (variables.ts). */
export interface PairInputs {
  TARGET_PAIR: string | undefined;
  PAIRS: string | undefined;
  taskIndex: number;
  taskCount: number;
}

/** The pairs this task builds, from TARGET_PAIR or PAIRS and Cloud Run's task index and count. */
export function selectTaskPairs(input: PairInputs): PairSelection {
  const targetPair = input.TARGET_PAIR;
  const pairsRaw = given(input.PAIRS);
  const { taskCount, taskIndex } = input;
  const problems: string[] = [];
  if (taskCount < 1) problems.push(`CLOUD_RUN_TASK_COUNT: expected at least 1 (got ${shown(String(taskCount))})`);
  else if (taskIndex >= taskCount) {
    problems.push(`CLOUD_RUN_TASK_INDEX: expected a task index below CLOUD_RUN_TASK_COUNT=${taskCount} (got ${shown(String(taskIndex))})`);
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
      problems.push(`PAIRS: expected pairs separated by spaces or commas, or "all" (got ${JSON.stringify(input.PAIRS)})`);
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
