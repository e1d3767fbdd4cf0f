// What the extract stage does before it reads a row, and what PLAN_ONLY=true does instead of the
// run: discovery (the pair's tables, their columns, optionally their versions) and the memory plan.
// One code path for both, so a plan that passes is the run's own checks passing.
import { KEY_COLUMN } from "../src/constants.ts";
import { TARGET_NOT_NULL_COLUMN, planTables, type Discovery, type PlannedTable } from "../src/discovery.ts";
import type { TableQuery } from "../src/warehouse/port.ts";
import { JobError } from "../src/errors.ts";
import { footerBytesPerRowGroup, planRowGroups, sliceWorkingBytes, type RowGroupInputs, type RowGroupPlan } from "../src/parts/plan.ts";
import { planMemory, type MemoryPlan } from "../src/memory-plan.ts";
import { freeBytes, isInMemoryFilesystem } from "../src/resources.ts";
import { formatBytes } from "../src/units.ts";
import type { StageContext } from "./types.ts";

export type DiscoverContext = Pick<StageContext, "config" | "log" | "warehouse" | "now">;

export interface Discovered {
  discovery: Discovery;
  /** `<dataset>.<table>` -> rows from the warehouse's table metadata, when it has them. */
  rowsByTable: Map<string, number | undefined>;
  /** The tables' logical bytes where the warehouse tells (BigQuery's INFORMATION_SCHEMA.PARTITIONS, with the versions). */
  bytesAtMost: number | undefined;
  /** `<dataset>.<table>` -> rows, where the versions' metadata tells (BigQuery); for a person only, not the memory plan. */
  versionRows: Map<string, number>;
}

export interface DiscoverOptions {
  /**
   * Read every table's version (default true). The run needs them for the part fingerprints; a
   * plan does not, except where the same query also gives the tables' bytes (BigQuery).
   */
  versions?: boolean;
}

/** The pair's tables and columns (refusing what the file cannot hold), their versions, and what the reads scan at most. */
export async function discover(ctx: DiscoverContext, opts: DiscoverOptions = {}): Promise<Discovered> {
  const { config, log, warehouse } = ctx;
  await warehouse.preflight([config.featuresDataset, config.targetsDataset]);
  const features = await warehouse.listTables(config.featuresDataset);
  const targets = await warehouse.listTables(config.targetsDataset);
  const discovery = planTables(
    config.pair,
    { dataset: config.featuresDataset, tables: features },
    { dataset: config.targetsDataset, tables: targets },
    warehouse.keyTypes,
  );
  const zoneless = discovery.zonelessKeys;
  if (zoneless.length > 0) {
    const { utc, zoneless: names } = warehouse.keyTypes;
    log.warn(
      { zonelessKeys: zoneless.length, tables: zoneless.slice(0, 20) },
      `${KEY_COLUMN} has no time zone (${names[0]}) in ${zoneless.length} of ${discovery.features.length + 1} tables (${zoneless.slice(0, 3).join(", ")}${zoneless.length > 3 ? ", ..." : ""}): its values are read as UTC; store it as ${utc[0]} to make that explicit`,
    );
  }
  let bytesAtMost: number | undefined;
  const versionRows = new Map<string, number>();
  if (opts.versions !== false) {
    // Versions only for the tables the file is made of: a features dataset holds every pair's tables.
    const range = { dateFrom: config.dateFrom, dateTo: config.dateTo };
    const started = ctx.now();
    const [featureVersions, targetVersions] = await Promise.all([
      warehouse.tableVersions(
        config.featuresDataset,
        discovery.features.map((t) => t.table),
        range,
      ),
      warehouse.tableVersions(config.targetsDataset, [discovery.target.table], range),
    ]);
    discovery.target.version = targetVersions.get(discovery.target.table)?.version;
    for (const t of discovery.features) t.version = featureVersions.get(t.table)?.version;
    for (const [dataset, versions] of [
      [config.featuresDataset, featureVersions],
      [config.targetsDataset, targetVersions],
    ] as const) {
      for (const [table, v] of versions) if (v.rows !== undefined) versionRows.set(`${dataset}.${table}`, v.rows);
    }
    log.info(
      { tables: discovery.features.length + 1, seconds: (ctx.now() - started) / 1000 },
      `read the versions of ${discovery.features.length + 1} tables in ${((ctx.now() - started) / 1000).toFixed(1)} s`,
    );
    // What the reads will scan, before any is made, where the warehouse tells (BigQuery).
    const sizes = [...featureVersions.values(), ...targetVersions.values()].map((v) => v.bytes);
    if (sizes.length > 0 && sizes.every((b) => b !== undefined)) {
      bytesAtMost = sizes.reduce((n: number, b) => n + b, 0);
      log.info(
        { bytesToScanAtMost: bytesAtMost },
        `the reads will scan at most ${formatBytes(bytesAtMost)} (the ${sizes.length} tables' logical bytes in INFORMATION_SCHEMA.PARTITIONS; each read session reports its own estimate, summed when extraction ends)`,
      );
    }
  }
  for (const skip of discovery.skipped) log.warn({ table: `${skip.dataset}.${skip.table}`, reason: skip.reason }, `skipping ${skip.table}: ${skip.reason}`);
  log.info(
    { featureTables: discovery.features.length, skipped: discovery.skipped.length, columns: discovery.columnCount },
    `discovered ${discovery.features.length} feature tables + 1 target table (${discovery.columnCount} columns) for ${config.pair}`,
  );
  return { discovery, rowsByTable: new Map([...features, ...targets].map((t) => [`${t.dataset}.${t.name}`, t.rows])), bytesAtMost, versionRows };
}

export interface ExtractionPlan {
  /** Target first, then the features: each table's width in values (the target's key counted). */
  widths: number[];
  /** The target's rows by the warehouse's metadata (capped by ROW_LIMIT); 0 when unknown (BigQuery). */
  targetRowsGuess: number;
  rowGroupInputs: RowGroupInputs;
  /** The row groups the guessed row count gives; the run decides them again from the target's real rows. */
  guessPlan: RowGroupPlan | undefined;
  memory: MemoryPlan;
  workDir: { inMemory: boolean; freeBytes: number | undefined };
}

/** What the run reads of a table: the date range, ROW_LIMIT, the target's row rule. */
export function queryFor(config: DiscoverContext["config"], table: PlannedTable): TableQuery {
  return {
    dataset: table.dataset,
    table: table.table,
    columns: table.columns,
    dateFrom: config.dateFrom,
    dateTo: config.dateTo,
    rowLimit: config.rowLimit,
    notNullColumn: table.role === "target" ? TARGET_NOT_NULL_COLUMN : undefined,
    ...(table.zonelessKey ? { zonelessKey: true as const } : {}),
  };
}

/** A table's rows by the warehouse's metadata, capped by ROW_LIMIT (0 when unknown). */
export function estimatedRows(
  config: DiscoverContext["config"],
  rowsByTable: Map<string, number | undefined>,
  t: Pick<PlannedTable, "dataset" | "table">,
): number {
  return Math.min(rowsByTable.get(`${t.dataset}.${t.table}`) ?? 0, config.rowLimit ?? Number.POSITIVE_INFINITY);
}

/** The memory plan, from discovery and the settings: what the work in flight holds, and whether it fits. */
export function planExtraction(config: DiscoverContext["config"], found: Pick<Discovered, "discovery" | "rowsByTable">): ExtractionPlan {
  const { discovery, rowsByTable } = found;
  const tables = [discovery.target, ...discovery.features];
  const widths = tables.map((t) => t.columns.length + (t.role === "target" ? 1 : 0));
  const targetRowsGuess = estimatedRows(config, rowsByTable, discovery.target);
  const outputNames = [KEY_COLUMN, ...tables.flatMap((t) => t.columns.map((c) => c.target))];
  const rowGroupInputs = {
    columns: discovery.columnCount,
    footerBytesPerRowGroup: footerBytesPerRowGroup(outputNames, 1 + discovery.target.columns.length),
    rowsPerGroup: config.rowGroupRows,
  };
  const guessPlan = targetRowsGuess > 0 ? planRowGroups(targetRowsGuess, rowGroupInputs) : undefined;
  const workDir = { inMemory: isInMemoryFilesystem(config.workDir), freeBytes: freeBytes(config.workDir) };
  const memory = planMemory({
    backend: config.backend,
    workers: config.maxWorkers,
    budgetBytes: config.memoryBudgetBytes,
    memoryLimitBytes: config.memoryLimitBytes,
    memoryLimitSource: config.memoryLimitSource,
    widestRowGroupBytes: guessPlan ? sliceWorkingBytes(guessPlan.rowsPerGroup, Math.max(...widths)) : 0,
    workDir: config.workDir,
    workDirInMemory: workDir.inMemory,
    workDirFreeBytes: workDir.freeBytes,
  });
  return { widths, targetRowsGuess, rowGroupInputs, guessPlan, memory, workDir };
}

/** Logs the memory plan and its warnings; refuses (exit 1, nothing read) when it cannot fit. */
export function enforceMemoryPlan(ctx: Pick<DiscoverContext, "config" | "log">, memory: MemoryPlan): void {
  const { config, log } = ctx;
  log.info(
    { plan: memory },
    `memory plan: tables in flight ~${formatBytes(memory.extractionBytes)} (MEMORY_BUDGET), runtime ~${formatBytes(memory.runtimeBytes)}${memory.warehouseBytes ? `, DuckDB and read buffers ~${formatBytes(memory.warehouseBytes)}` : ""}, footers ~${formatBytes(memory.assemblyBytes)}; needs ~${formatBytes(memory.memoryNeededBytes)} of ${formatBytes(config.memoryLimitBytes)} (${config.memoryLimitSource}); the file itself is assembled in the bucket`,
  );
  for (const w of memory.warnings) log.warn({ plan: "memory" }, w);
  if (!memory.fits) throw memoryPlanRefusal(memory);
}

/** The run's refusal of a plan that does not fit; a plan reports the same one. */
export function memoryPlanRefusal(memory: MemoryPlan): JobError {
  return new JobError(memory.problems.join("\n  "), { reason: "memory-plan", fix: "see the numbers above; nothing was extracted" });
}
