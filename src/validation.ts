// What makes a training file valid. Pure rules over the file's footer figures and its key column,
// so validation never loads the file.
import { KEY_COLUMN, REQUIRED_TARGET_HORIZONS, TARGET_COLUMNS } from "./constants.ts";

export interface ValidationInput {
  rows: number;
  columnNames: readonly string[];
  /** Null count per column from the footer statistics; undefined where a row group lacks them. */
  nullCounts: ReadonlyMap<string, number | undefined>;
  key: { present: boolean; strictlyIncreasing: boolean; firstViolationRow?: number };
  expectedRows: number;
  /** Tables whose parts the file's footer was built from (the target included). */
  tablesInFile: number;
  tablesDiscovered: number;
  /** Output column -> family (first word of its table's name). */
  familyOf: (column: string) => string;
  minRows: number;
  minColumns: number;
}

export interface FamilyNulls {
  columns: number;
  nullCells: number;
  nullRate: number;
  entirelyNull: string[];
}

export interface ValidationReport {
  ok: boolean;
  errors: string[];
  warnings: string[];
  rows: number;
  columns: number;
  features: number;
  targetsPresent: number;
  horizons: Record<string, boolean>;
  nulls: Record<string, FamilyNulls>;
  overallNullRate: number | null;
}

export function validateTrainingFile(input: ValidationInput): ValidationReport {
  const errors: string[] = [];
  const warnings: string[] = [];
  const names = input.columnNames;
  const nameSet = new Set(names);

  if (input.rows < input.minRows) errors.push(`rows: ${input.rows} < MIN_ROWS ${input.minRows}`);
  if (names.length < input.minColumns) errors.push(`columns: ${names.length} < MIN_COLUMNS ${input.minColumns}`);
  if (input.rows !== input.expectedRows) {
    errors.push(`rows: ${input.rows} in the file but the target table defines ${input.expectedRows}; the join changed the row count`);
  }
  if (!input.key.present) errors.push(`${KEY_COLUMN} is missing`);
  else if (!input.key.strictlyIncreasing) {
    errors.push(`${KEY_COLUMN} is not unique and strictly increasing (first violation at row ${input.key.firstViolationRow ?? "?"})`);
  }

  const missingTargets = TARGET_COLUMNS.filter((c) => !nameSet.has(c));
  if (missingTargets.length > 0) errors.push(`targets: ${missingTargets.length} of 49 missing (${missingTargets.slice(0, 5).join(", ")})`);
  const horizons = Object.fromEntries(REQUIRED_TARGET_HORIZONS.map((h) => [h, nameSet.has(h)]));

  const targetSet = new Set(TARGET_COLUMNS);
  const features = names.filter((n) => n !== KEY_COLUMN && !targetSet.has(n)).length;
  if (features === 0) errors.push("features: none");

  if (nameSet.size !== names.length) {
    const seen = new Set<string>();
    const dups = names.filter((n) => (seen.has(n) ? true : (seen.add(n), false)));
    errors.push(`duplicate column names: ${[...new Set(dups)].slice(0, 5).join(", ")}`);
  }
  // polars suffixes a clashing join column with "_right" (eager) or "right" (lazy).
  const suffixed = names.filter((n) => n.endsWith("_right") || (n.endsWith("right") && nameSet.has(n.slice(0, -"right".length))));
  if (suffixed.length > 0) errors.push(`join-suffixed duplicate columns: ${suffixed.slice(0, 5).join(", ")}`);

  if (input.tablesInFile !== input.tablesDiscovered) {
    errors.push(`tables: ${input.tablesInFile} in the file but ${input.tablesDiscovered} discovered`);
  }

  const nulls: Record<string, FamilyNulls> = {};
  let nullCells = 0;
  let counted = 0;
  let unknown = 0;
  for (const name of names) {
    if (name === KEY_COLUMN) continue;
    const count = input.nullCounts.get(name);
    if (count === undefined) {
      unknown += 1;
      continue;
    }
    const family = targetSet.has(name) ? "target" : input.familyOf(name);
    const entry = (nulls[family] ??= { columns: 0, nullCells: 0, nullRate: 0, entirelyNull: [] });
    entry.columns += 1;
    entry.nullCells += count;
    if (input.rows > 0 && count === input.rows) entry.entirelyNull.push(name);
    nullCells += count;
    counted += 1;
  }
  for (const entry of Object.values(nulls)) {
    entry.nullRate = input.rows > 0 ? entry.nullCells / (entry.columns * input.rows) : 0;
  }
  for (const [family, entry] of Object.entries(nulls)) {
    if (entry.entirelyNull.length > 0) {
      warnings.push(
        `${family}: ${entry.entirelyNull.length} entirely null column(s): ${entry.entirelyNull.slice(0, 8).join(", ")}${entry.entirelyNull.length > 8 ? ", ..." : ""}`,
      );
    }
  }
  for (const h of REQUIRED_TARGET_HORIZONS) {
    if (nameSet.has(h) && input.rows > 0 && input.nullCounts.get(h) === input.rows) errors.push(`target ${h} is entirely null`);
  }
  if (unknown > 0) warnings.push(`null counts unavailable for ${unknown} columns (no statistics in the footer)`);

  return {
    ok: errors.length === 0,
    errors,
    warnings,
    rows: input.rows,
    columns: names.length,
    features,
    targetsPresent: TARGET_COLUMNS.length - missingTargets.length,
    horizons,
    nulls,
    overallNullRate: counted > 0 && input.rows > 0 ? nullCells / (counted * input.rows) : null,
  };
}
