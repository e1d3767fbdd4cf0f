import { describe, expect, it } from "vitest";
import { TARGET_COLUMNS } from "../../src/constants.ts";
import { validateTrainingFile, type ValidationInput } from "../../src/validation.ts";

const ROWS = 1_000;
const features = ["agg_x", "agg_y", "corr_etf_idx_spy_a", "tri_agg_bqx_eur_usd_gbp_t"];
function input(overrides: Partial<ValidationInput> = {}): ValidationInput {
  const columnNames = ["interval_time", ...TARGET_COLUMNS, ...features];
  return {
    rows: ROWS,
    columnNames,
    nullCounts: new Map(columnNames.map((c) => [c, c === "corr_etf_idx_spy_a" ? ROWS : c === "agg_y" ? 10 : 0])),
    key: { present: true, strictlyIncreasing: true },
    expectedRows: ROWS,
    tablesInFile: 3,
    tablesDiscovered: 3,
    familyOf: (c) => c.split("_")[0]!,
    minRows: 100,
    minColumns: 50,
    ...overrides,
  };
}

describe("training file validation", () => {
  it("passes a good file and reports horizons and nulls per family", () => {
    const r = validateTrainingFile(input());
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.features).toBe(4);
    expect(Object.values(r.horizons)).toEqual([true, true, true, true, true, true, true]);
    expect(r.nulls.agg).toEqual({ columns: 2, nullCells: 10, nullRate: 10 / 2000, entirelyNull: [] });
    expect(r.nulls.corr!.entirelyNull).toEqual(["corr_etf_idx_spy_a"]);
    expect(r.warnings).toEqual(["corr: 1 entirely null column(s): corr_etf_idx_spy_a"]);
  });

  it.each<[string, Partial<ValidationInput>, RegExp]>([
    ["too few rows", { minRows: 5_000 }, /^rows: 1000 < MIN_ROWS 5000$/],
    ["too few columns", { minColumns: 100 }, /^columns: 54 < MIN_COLUMNS 100$/],
    ["a row count the target does not define", { expectedRows: 900 }, /target table defines 900; the join changed the row count/],
    ["no key", { key: { present: false, strictlyIncreasing: false } }, /^interval_time is missing$/],
    ["a key out of order", { key: { present: true, strictlyIncreasing: false, firstViolationRow: 17 } }, /first violation at row 17/],
    ["tables in the file not matching discovery", { tablesInFile: 2 }, /^tables: 2 in the file but 3 discovered$/],
    ["no features", { columnNames: ["interval_time", ...TARGET_COLUMNS], minColumns: 1 }, /^features: none$/],
    [
      "a missing horizon",
      { columnNames: ["interval_time", ...TARGET_COLUMNS.filter((c) => c !== "target_bqx45_h60"), ...features] },
      /targets: 1 of 49 missing \(target_bqx45_h60\)/,
    ],
    ["duplicate names", { columnNames: ["interval_time", ...TARGET_COLUMNS, "agg_x", "agg_x"] }, /^duplicate column names: agg_x$/],
    [
      "join suffixes",
      { columnNames: ["interval_time", ...TARGET_COLUMNS, "agg_x", "agg_x_right", "agg_y", "agg_yright"] },
      /^join-suffixed duplicate columns: agg_x_right, agg_yright$/,
    ],
  ])("fails on %s", (_, overrides, message) => {
    const r = validateTrainingFile(input(overrides));
    expect(r.ok).toBe(false);
    expect(r.errors).toContainEqual(expect.stringMatching(message));
  });

  it("fails when a required horizon is entirely null", () => {
    const base = input();
    const nullCounts = new Map(base.nullCounts);
    nullCounts.set("target_bqx45_h105", ROWS);
    expect(validateTrainingFile({ ...base, nullCounts }).errors).toContain("target target_bqx45_h105 is entirely null");
  });
});
