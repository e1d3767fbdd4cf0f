// Stage 3: validate the training file from what the job holds, without reading it: the merged
// footer (rows, columns and their names, the 49 targets and 7 horizons, null counts from the
// column chunks' statistics) and the target's keys (checked unique and strictly increasing when
// they were read; every part was joined onto exactly those keys).
import { tableFamily } from "../src/discovery.ts";
import { KEY_COLUMN } from "../src/constants.ts";
import { JobError } from "../src/errors.ts";
import { summarizeFooter } from "../src/parquet/index.ts";
import { validateTrainingFile } from "../src/validation.ts";
import type { Stage } from "./types.ts";

export const validateStage: Stage = {
  name: "validate",
  async run(ctx) {
    const { config, log, state } = ctx;
    const { assembly, discovery, extraction } = state;
    if (!assembly || !discovery || !extraction) throw new Error("validate needs the merge stage's layout");
    const { footer } = assembly.layout;
    const thrift = new Uint8Array(Buffer.concat([footer.body, footer.tail({})]));
    const summary = summarizeFooter(thrift, assembly.layout.dataEnd + thrift.length + 8);
    const familyByColumn = new Map<string, string>();
    for (const table of discovery.features) {
      const family = tableFamily(table.table);
      for (const c of table.columns) familyByColumn.set(c.target, family);
    }
    const report = validateTrainingFile({
      rows: summary.numRows,
      columnNames: summary.columnNames,
      nullCounts: summary.nullCounts,
      key: { present: summary.columnNames.includes(KEY_COLUMN), strictlyIncreasing: extraction.target.keyStrictlyIncreasing },
      expectedRows: extraction.target.rows,
      // Counted from the parts the footer was built from, not from the plan.
      tablesInFile: new Set(assembly.layout.parts.map((p) => p.table)).size,
      tablesDiscovered: 1 + discovery.features.length,
      familyOf: (column) => familyByColumn.get(column) ?? "unknown",
      minRows: config.minRows,
      minColumns: config.minColumns,
    });
    state.validation = report;
    for (const warning of report.warnings) log.warn({ check: "nulls" }, warning);
    log.info(
      { horizons: report.horizons, nullRateByFamily: Object.fromEntries(Object.entries(report.nulls).map(([f, n]) => [f, Number(n.nullRate.toFixed(4))])) },
      `targets: ${report.targetsPresent}/49 present; horizons ${Object.entries(report.horizons)
        .map(([h, ok]) => `${h}${ok ? "" : " MISSING"}`)
        .join(", ")}`,
    );
    if (!report.ok) {
      throw new JobError(`training file failed validation:\n  ${report.errors.join("\n  ")}`, {
        reason: "validation-failed",
        fix: "nothing was published; fix the data (or MIN_ROWS/MIN_COLUMNS for a small warehouse) and run again",
      });
    }
    return {
      rows: report.rows,
      columns: report.columns,
      features: report.features,
      rowGroups: summary.rowGroups.length,
      overallNullRate: report.overallNullRate,
      warnings: report.warnings.length,
    };
  },
};
