// Which tables make up a pair's training file, and what their columns are called in it.
// Pure functions over the INFORMATION_SCHEMA listing; no I/O.
import { KEY_COLUMN, NON_FEATURE_COLUMNS, SHARED_FAMILIES, TARGET_COLUMNS, TARGET_ROW_FILTER_COLUMN, targetTableName } from "./constants.ts";
import { JobError } from "./errors.ts";
import { RENAME_FIX, nameProblem, outputNameProblem, shownName } from "./names.ts";
import type { ColumnMapping, KeyTypes, TableInfo } from "./warehouse/port.ts";

export interface PlannedTable {
  dataset: string;
  table: string;
  role: "target" | "feature";
  /** The name prefix used for this table's columns ("" for the target table). */
  prefix: string;
  columns: ColumnMapping[];
  /** The table's version in the warehouse (Warehouse.tableVersions), once discovery has asked for it. */
  version?: string | undefined;
  /** The key has no time zone (DuckDB TIMESTAMP, BigQuery DATETIME): its values are read as UTC. */
  zonelessKey?: true;
}

export interface SkippedTable {
  dataset: string;
  table: string;
  reason: string;
}

export interface Discovery {
  target: PlannedTable;
  features: PlannedTable[];
  skipped: SkippedTable[];
  /** Output columns in file order: key, targets, then features table by table. */
  columnCount: number;
  /** `<dataset>.<table>` of the tables whose key has no time zone (read as UTC), in plan order. */
  zonelessKeys: string[];
}

/** How a feature column travels to the training file, whichever warehouse it comes from. */
export type FeatureKind = "float64" | "int64" | "bool" | "utf8" | "date";

const KINDS: ReadonlyArray<readonly [FeatureKind, readonly string[]]> = [
  ["float64", ["FLOAT64", "FLOAT", "DOUBLE", "REAL", "FLOAT4", "FLOAT8"]],
  [
    "int64",
    ["INT64", "BIGINT", "INTEGER", "INT", "SMALLINT", "TINYINT", "BYTEINT", "UINTEGER", "USMALLINT", "UTINYINT", "INT8", "INT4", "INT2", "INT1", "LONG"],
  ],
  ["bool", ["BOOL", "BOOLEAN"]],
  ["utf8", ["STRING", "VARCHAR", "TEXT"]],
  ["date", ["DATE"]],
];

/**
 * The kind a warehouse column type (BigQuery's or DuckDB's name) is carried as, or undefined when
 * the training file cannot hold it the same way from both warehouses (NUMERIC/DECIMAL, arrays,
 * structs, ...): such a column is refused at discovery, before anything is read.
 */
export function columnKind(type: string): FeatureKind | undefined {
  const t = type
    .toUpperCase()
    .replace(/\(.*\)$/, "")
    .trim();
  return KINDS.find(([, names]) => names.includes(t))?.[0];
}

export const SUPPORTED_TYPES = "FLOAT64 (DOUBLE), INT64 (BIGINT and smaller integers), BOOL, STRING (VARCHAR) or DATE";

export function isPairTable(name: string, pair: string): boolean {
  return name.includes(pair);
}

export function sharedFamilyOf(name: string): string | undefined {
  return SHARED_FAMILIES.find((family) => name.startsWith(`${family}_`));
}

/**
 * Prefix rule that keeps 17,000 names unique: pair tables lose the pair from their name
 * (`agg_bqx_eurusd` -> `agg_bqx`, `cov_agg_eurusd_gbpusd` -> `cov_agg_gbpusd`), shared-family
 * tables (tri/mkt/var/csi) keep their full name.
 */
export function columnPrefix(table: string, pair: string): string {
  if (sharedFamilyOf(table) !== undefined) return table;
  const parts = table.split("_");
  const kept = parts.filter((part) => part !== pair);
  const prefix = kept.length === parts.length ? table.replace(pair, "").replace(/__+/g, "_").replace(/^_|_$/g, "") : kept.join("_");
  return prefix === "" ? table : prefix;
}

export function featureColumnName(prefix: string, column: string): string {
  return `${prefix}_${column}`;
}

/**
 * Applies the production selection rules to the listings of the features and targets datasets,
 * classifying every key by the warehouse's `keyTypes`. Throws a JobError naming every problem
 * (every table with a key that is not a timestamp among them) when the result cannot make a valid
 * training file.
 */
export function planTables(
  pair: string,
  features: { dataset: string; tables: TableInfo[] },
  targets: { dataset: string; tables: TableInfo[] },
  keyTypes: KeyTypes,
): Discovery {
  const skipped: SkippedTable[] = [];
  const problems: string[] = [];
  const target = planTarget(pair, targets, keyTypes, problems);

  const selected = features.tables
    .filter((t) => isPairTable(t.name, pair) || sharedFamilyOf(t.name) !== undefined)
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const planned: PlannedTable[] = [];
  const owners = new Map<string, string>(TARGET_COLUMNS.map((c) => [c.toLowerCase(), target.table]));
  owners.set(KEY_COLUMN, target.table);
  for (const info of selected) {
    const outcome = planFeature(info, pair, features.dataset, keyTypes);
    if ("problem" in outcome) problems.push(outcome.problem);
    else if ("skip" in outcome) skipped.push({ dataset: features.dataset, table: info.name, reason: outcome.skip });
    else {
      claimColumns(outcome.table, owners, problems);
      planned.push(outcome.table);
    }
  }

  if (planned.length === 0) {
    problems.push(
      `no feature tables for ${pair} in ${features.dataset} (looked for names containing "${pair}" and the ${SHARED_FAMILIES.map((f) => `${f}_*`).join("/")} families)`,
    );
  }
  if (problems.length > 0) {
    throw new JobError(`discovery found ${problems.length} problem(s):\n  ${problems.join("\n  ")}`, {
      reason: "discovery",
      fix: "fix the tables named above in the warehouse, or check TARGET_PAIR, FEATURES_DATASET and TARGETS_DATASET",
    });
  }
  const columnCount = 1 + target.columns.length + planned.reduce((n, t) => n + t.columns.length, 0);
  const zonelessKeys = [target, ...planned].filter((t) => t.zonelessKey).map((t) => `${t.dataset}.${t.table}`);
  return { target, features: planned, skipped, columnCount, zonelessKeys };
}

/** The target table: missing is thrown at once; its other problems join the list. */
function planTarget(pair: string, targets: { dataset: string; tables: TableInfo[] }, keyTypes: KeyTypes, problems: string[]): PlannedTable {
  const targetName = targetTableName(pair);
  const targetInfo = targets.tables.find((t) => t.name === targetName);
  if (!targetInfo) {
    throw new JobError(`target table ${targets.dataset}.${targetName} not found`, {
      reason: "target-table-missing",
      fix: `create ${targetName} in ${targets.dataset}, or set TARGETS_DATASET to the dataset that holds it`,
    });
  }
  const targetKey = checkKey(targetInfo, keyTypes);
  if (targetKey.problem) problems.push(targetKey.problem);
  const targetColumns = new Set(targetInfo.columns.map((c) => c.name));
  const missingTargets = TARGET_COLUMNS.filter((c) => !targetColumns.has(c));
  if (missingTargets.length > 0) {
    problems.push(
      `${targets.dataset}.${targetName} lacks ${missingTargets.length} target columns: ${missingTargets.slice(0, 7).join(", ")}${missingTargets.length > 7 ? ", ..." : ""}`,
    );
  }
  for (const c of targetInfo.columns.filter((c) => TARGET_COLUMNS.includes(c.name) && columnKind(c.type) === undefined)) {
    problems.push(`${targets.dataset}.${targetName}.${c.name} has type ${c.type}; store targets as ${SUPPORTED_TYPES}`);
  }
  return {
    dataset: targets.dataset,
    table: targetName,
    role: "target",
    prefix: "",
    columns: TARGET_COLUMNS.filter((c) => targetColumns.has(c)).map((c) => ({
      source: c,
      target: c,
      type: targetInfo.columns.find((t) => t.name === c)!.type,
    })),
    ...(targetKey.zoneless ? { zonelessKey: true as const } : {}),
  };
}

/** One selected feature table: planned, skipped with a reason, or a problem that stops the run. */
function planFeature(info: TableInfo, pair: string, dataset: string, keyTypes: KeyTypes): { table: PlannedTable } | { skip: string } | { problem: string } {
  const tableProblem = nameProblem(info.name);
  if (tableProblem !== undefined) return { problem: `table ${shownName(`${info.dataset}.${info.name}`)}: its name ${tableProblem}; ${RENAME_FIX}` };
  const badColumns = info.columns.flatMap((c) => {
    const problem = nameProblem(c.name);
    return problem === undefined ? [] : [`${shownName(c.name)} ${problem}`];
  });
  if (badColumns.length > 0) return { problem: `table ${shownName(`${info.dataset}.${info.name}`)}: column ${badColumns.join(", column ")}; ${RENAME_FIX}` };
  if (!info.columns.some((c) => c.name === KEY_COLUMN)) return { skip: `no ${KEY_COLUMN} column, so it cannot be joined` };
  const key = checkKey(info, keyTypes);
  if (key.problem) return { problem: key.problem };
  const prefix = columnPrefix(info.name, pair);
  const columns = info.columns
    .filter((c) => !NON_FEATURE_COLUMNS.includes(c.name))
    .map((c) => ({ source: c.name, target: featureColumnName(prefix, c.name), type: c.type }));
  const unsupported = columns.filter((c) => columnKind(c.type) === undefined);
  if (unsupported.length > 0) {
    return {
      problem: `${info.dataset}.${info.name} has ${unsupported.length} column(s) of types the training file cannot hold: ${unsupported
        .slice(0, 5)
        .map((c) => `${c.source} (${c.type})`)
        .join(", ")}${unsupported.length > 5 ? ", ..." : ""}; store features as ${SUPPORTED_TYPES}`,
    };
  }
  if (columns.length === 0) return { skip: "no feature columns besides the key" };
  return { table: { dataset, table: info.name, role: "feature", prefix, columns, ...(key.zoneless ? { zonelessKey: true as const } : {}) } };
}

/** Records the table's output names; a name taken already (ignoring case) or too long is a problem. */
function claimColumns(table: PlannedTable, owners: Map<string, string>, problems: string[]): void {
  for (const column of table.columns) {
    // Names equal but for case collide too: BigQuery, Spark and Hive compare column names ignoring case.
    const owner = owners.get(column.target.toLowerCase());
    const tooLong = outputNameProblem(column.target);
    if (owner !== undefined) {
      problems.push(
        `column ${shownName(column.target)} from ${shownName(`${table.table}.${column.source}`)} collides with a column of ${shownName(owner)} after prefixing (names must differ in more than case); rename one of the two columns in the warehouse`,
      );
    } else if (tooLong !== undefined) {
      problems.push(
        `column ${shownName(column.target)} from ${shownName(`${table.table}.${column.source}`)} ${tooLong}; shorten the table's or the column's name in the warehouse`,
      );
    } else {
      owners.set(column.target.toLowerCase(), table.table);
    }
  }
}

function checkKey(info: TableInfo, keyTypes: KeyTypes): { problem?: string; zoneless?: boolean } {
  const key = info.columns.find((c) => c.name === KEY_COLUMN);
  if (!key) return { problem: `${info.dataset}.${info.name} has no ${KEY_COLUMN} column` };
  const type = key.type.toUpperCase();
  if (keyTypes.utc.includes(type)) return {};
  if (keyTypes.zoneless.includes(type)) return { zoneless: true };
  return {
    problem: `${info.dataset}.${info.name}.${KEY_COLUMN} has type ${key.type}; expected ${keyTypes.utc[0]} (a UTC instant) or ${keyTypes.zoneless[0]} (no time zone: read as UTC)`,
  };
}

/** A feature table's family, as validation counts nulls and the report draws them: the first `_`-separated word of its name. */
export function tableFamily(table: string): string {
  return table.split("_")[0] || table;
}

/** The target table's row rule, shared by every backend's extraction. */
export const TARGET_NOT_NULL_COLUMN = TARGET_ROW_FILTER_COLUMN;
