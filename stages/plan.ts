// PLAN_ONLY=true: for each selected pair, what the run would do before its first read, and what it
// would cost, without reading a row or writing an object (the output's write probe aside):
// discovery and the memory plan through the extract stage's own code (stages/discover.ts), the
// permission checks the run meets first, the disk WORK_DIR needs, and the bytes the reads scan
// (BigQuery dry runs; an estimate on DuckDB) priced by src/plan/cost.ts. A refusal is the run's
// own, named the same way; every pair is planned before the exit code says so.
import { tablesPerThread } from "../src/concurrency.ts";
import { configForPair } from "../src/fanout.ts";
import { JobError, describeError } from "../src/errors.ts";
import type { Logger } from "../src/log.ts";
import { FOOTER_LIMIT_BYTES } from "../src/parts/plan.ts";
import { estimateCost, type ReadRoute } from "../src/plan/cost.ts";
import { formatPlanTable, planMessage, type CheckResult, type PairPlan } from "../src/plan/report.ts";
import { EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK } from "../src/exit-codes.ts";
import { discover, estimatedRows, memoryPlanRefusal, planExtraction, queryFor, type DiscoverContext } from "./discover.ts";

export interface PlanContext extends DiscoverContext {
  signal: AbortSignal;
  /** How the output's write check went (it runs once, before the pairs), and its refusal. */
  output: { result: CheckResult; error?: unknown };
}

function asRefusal(err: unknown): NonNullable<PairPlan["problem"]> {
  const job = err instanceof JobError ? err : undefined;
  return { reason: job?.reason ?? "unexpected", message: describeError(err), fix: job?.fix };
}

/** What the run would hold: memory against the limit, and what WORK_DIR takes. */
function memoryFigures(
  config: PlanContext["config"],
  memory: ReturnType<typeof planExtraction>["memory"],
  workDir: ReturnType<typeof planExtraction>["workDir"],
): Pick<PairPlan, "memory" | "workDir"> {
  return {
    memory: {
      neededBytes: memory.memoryNeededBytes,
      limitBytes: config.memoryLimitBytes,
      limitSource: config.memoryLimitSource,
      budgetBytes: config.memoryBudgetBytes,
      budgetSource: config.memoryBudgetSource,
      workers: config.maxWorkers,
      tablesInFlight: config.maxWorkers * tablesPerThread(config.backend, config.extractConcurrency, config.maxWorkers),
      bytesPerWorker: Math.floor(config.memoryBudgetBytes / config.maxWorkers),
      duckdbBytesPerWorker: memory.duckdbBytesPerWorker,
      fits: memory.fits,
      warnings: memory.warnings,
    },
    // Part files wait in WORK_DIR within MEMORY_BUDGET; the assembly adds its footer object (under the footer limit).
    workDir: {
      path: config.workDir,
      needBytes: memory.extractionBytes + FOOTER_LIMIT_BYTES,
      inMemory: workDir.inMemory,
      freeBytes: workDir.freeBytes ?? null,
    },
  };
}

/** One pair's plan. Never throws for a refusal (it is in the plan); only an interruption escapes. */
export async function planPair(ctx: PlanContext): Promise<PairPlan> {
  const { config, warehouse } = ctx;
  const started = ctx.now();
  const plan: PairPlan = {
    pair: config.pair,
    backend: config.backend,
    ok: true,
    tables: null,
    skippedTables: null,
    columns: null,
    rowsEstimate: null,
    memory: null,
    workDir: null,
    scan: null,
    cost: null,
    checks: { datasets: "not reached", output: ctx.output.result, readSessions: config.backend === "gcp" ? "not reached" : "not needed" },
    seconds: 0,
  };
  let problem: unknown = ctx.output.result === "failed" ? ctx.output.error : undefined;
  try {
    // The versions query is where BigQuery tells the tables' bytes; DuckDB's versions read every row, which a plan does not need.
    const found = await discover(ctx, { versions: config.backend === "gcp" }).catch((err: unknown) => {
      plan.checks.datasets = "failed";
      throw err;
    });
    plan.checks.datasets = "ok";
    const { discovery } = found;
    const tables = [discovery.target, ...discovery.features];
    plan.tables = tables.length;
    plan.skippedTables = discovery.skipped.length;
    plan.columns = discovery.columnCount;
    const targetName = `${discovery.target.dataset}.${discovery.target.table}`;
    const rows =
      estimatedRows(config, found.rowsByTable, discovery.target) ||
      Math.min(found.versionRows.get(targetName) ?? 0, config.rowLimit ?? Number.POSITIVE_INFINITY);
    plan.rowsEstimate = rows > 0 ? rows : null;

    const { memory, workDir } = planExtraction(config, found);
    Object.assign(plan, memoryFigures(config, memory, workDir));
    if (!memory.fits) problem ??= memoryPlanRefusal(memory);

    const reads = tables.map((t) => queryFor(config, t));
    if (config.backend === "gcp") {
      try {
        await warehouse.checkReadAccess(reads[0]!);
        plan.checks.readSessions = "ok";
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        plan.checks.readSessions = "failed";
        problem ??= err;
      }
    }
    // Loaded for gcp only: a local plan never loads the Google clients.
    const route: ReadRoute =
      config.backend === "gcp" ? (await import("../src/warehouse/bigquery-sql.ts")).readRouteFor(config.gcp, { rowLimit: config.rowLimit }) : "local";
    const estimate = await warehouse.estimateReads(reads);
    const bytes = estimate.bytes.reduce((n, b) => n + b, 0);
    plan.scan = { route, bytes, method: estimate.method, measured: estimate.measured, dryRuns: estimate.dryRuns, upperBoundBytes: found.bytesAtMost ?? null };
    plan.cost = estimateCost(route, estimate.bytes);
  } catch (err) {
    if (ctx.signal.aborted) throw err;
    problem ??= err;
  }
  if (problem !== undefined) {
    plan.ok = false;
    plan.problem = asRefusal(problem);
  }
  plan.seconds = Number(((ctx.now() - started) / 1000).toFixed(3));
  return plan;
}

export interface PlanPairsOptions extends Omit<PlanContext, "log" | "config"> {
  config: PlanContext["config"];
  log: Logger;
}

/**
 * Plans every selected pair (PLAN_ONLY covers the whole list in one task), logging one line per
 * pair with its figures in `plan`, then the table for a person. Exit code: 0 when every pair's
 * run could start, 1 when any would be refused (all of them named), 130 when interrupted.
 */
export async function planPairs(opts: PlanPairsOptions): Promise<number> {
  const { config, log } = opts;
  const plans: PairPlan[] = [];
  for (const pair of config.pairs) {
    if (opts.signal.aborted) return EXIT_INTERRUPTED;
    const pairLog = config.pairs.length > 1 ? log.child({ pair }) : log;
    const plan = await planPair({ ...opts, config: configForPair(config, pair), log: pairLog });
    plans.push(plan);
    const fields = { plan, ...(plan.problem ? { reason: plan.problem.reason, fix: plan.problem.fix } : {}) };
    if (plan.ok) pairLog.info(fields, planMessage(plan));
    else pairLog.error(fields, planMessage(plan));
  }
  const refused = plans.filter((p) => !p.ok).map((p) => p.pair);
  log.info(
    { pairs: plans.length, refused },
    `plan of ${plans.length} pair${plans.length === 1 ? "" : "s"} (nothing was read or written):\n${formatPlanTable(plans)}`,
  );
  if (refused.length > 0) {
    log.error({ refused, exitCode: EXIT_FAILED }, `the run would be refused for ${refused.length} of ${plans.length} pairs: ${refused.join(", ")}`);
    return EXIT_FAILED;
  }
  return EXIT_OK;
}
