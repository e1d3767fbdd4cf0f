// Stage 3: validate the merged file from its footer and a streamed read of the key column.
import { readdir } from "node:fs/promises";
import { KEY_COLUMN } from "../src/constants.ts";
import { JobError } from "../src/errors.ts";
import { readColumn, readFooterSummary } from "../src/parquet/footer.ts";
import { validateTrainingFile } from "../src/validation.ts";
import type { Stage } from "./types.ts";

/** Streams the key one row group at a time and checks it is strictly increasing. */
export async function checkKeyOrder(file: string): Promise<{ strictlyIncreasing: boolean; firstViolationRow?: number }> {
  let previous: bigint | undefined;
  let row = 0;
  let firstViolationRow: number | undefined;
  await readColumn(file, KEY_COLUMN, (values) => {
    for (let i = 0; i < values.length; i += 1, row += 1) {
      const value = values[i];
      const current = typeof value === "bigint" ? value : value instanceof Date ? BigInt(value.getTime()) * 1000n : undefined;
      if (current === undefined || (previous !== undefined && current <= previous)) {
        firstViolationRow ??= row;
      }
      if (current !== undefined) previous = current;
    }
  });
  return firstViolationRow === undefined ? { strictlyIncreasing: true } : { strictlyIncreasing: false, firstViolationRow };
}

async function countCheckpointFiles(dir: string): Promise<number> {
  try {
    return (await readdir(dir)).filter((name) => name.endsWith(".parquet")).length;
  } catch {
    return 0;
  }
}

export const validateStage: Stage = {
  name: "validate",
  async run(ctx) {
    const { config, log, state } = ctx;
    const { merged, discovery, checkpoints } = state;
    if (!merged || !discovery || !checkpoints) throw new Error("validate needs the merge stage's output");

    const footer = await readFooterSummary(merged.path);
    const present = footer.columnNames.includes(KEY_COLUMN);
    const key = present ? await checkKeyOrder(merged.path) : { strictlyIncreasing: false };
    const familyByColumn = new Map<string, string>();
    for (const table of discovery.features) {
      const family = table.table.split("_")[0] ?? table.table;
      for (const c of table.columns) familyByColumn.set(c.target, family);
    }
    const report = validateTrainingFile({
      rows: footer.numRows,
      columnNames: footer.columnNames,
      nullCounts: footer.nullCounts,
      key: { present, ...key },
      expectedRows: checkpoints.target.rows,
      // Counted where they are, not where they were planned: the original once wrote
      // checkpoints to one directory and counted them in another.
      checkpointsUsed: Math.min(merged.tablesMerged, await countCheckpointFiles(ctx.layout.checkpoints)),
      tablesDiscovered: 1 + discovery.features.length,
      familyOf: (column) => familyByColumn.get(column) ?? "unknown",
      minRows: config.minRows,
      minColumns: config.minColumns,
    });
    state.validation = report;

    for (const warning of report.warnings) log.warn({ check: "nulls" }, warning);
    log.info(
      { horizons: report.horizons, nullRateByFamily: Object.fromEntries(Object.entries(report.nulls).map(([f, n]) => [f, Number(n.nullRate.toFixed(4))])) },
      `targets: ${report.targetsPresent}/49 present; horizons ${Object.entries(report.horizons).map(([h, ok]) => `${h}${ok ? "" : " MISSING"}`).join(", ")}`,
    );
    if (!report.ok) {
      throw new JobError(`training file failed validation:\n  ${report.errors.join("\n  ")}`, {
        reason: "validation-failed",
        fix: "nothing was uploaded; fix the data (or MIN_ROWS/MIN_COLUMNS for a small warehouse) and run again",
      });
    }
    return {
      rows: report.rows,
      columns: report.columns,
      features: report.features,
      rowGroups: footer.rowGroups.length,
      overallNullRate: report.overallNullRate,
      warnings: report.warnings.length,
    };
  },
};
