import { describe, expect, it } from "vitest";
import {
  DECODED_ROW_GROUP_LIMIT_BYTES,
  FOOTER_LIMIT_BYTES,
  footerBytesPerRowGroup,
  planRowGroups,
  planSlices,
  sliceWorkingBytes,
} from "../../src/parts/plan.ts";

/** EURUSD's shape: 17,038 columns with names ~27 bytes long on average. */
const eurusdNames = Array.from({ length: 17_038 }, (_, i) => `agg_bqx_feature_column_${String(i).padStart(5, "0")}`);
const eurusd = { columns: eurusdNames.length, footerBytesPerRowGroup: footerBytesPerRowGroup(eurusdNames, 50) };

describe("the row-group plan", () => {
  it("holds both limits at the full EURUSD shape: decoded row groups under 512 MiB, the footer under 64 MiB", () => {
    const plan = planRowGroups(175_970, eurusd);
    expect(plan.limitedBy).toBe("both");
    expect(plan.decodedGroupBytes).toBeLessThanOrEqual(DECODED_ROW_GROUP_LIMIT_BYTES);
    expect(plan.footerEstimateBytes).toBeLessThanOrEqual(FOOTER_LIMIT_BYTES);
    expect(plan.groups * plan.rowsPerGroup).toBeGreaterThanOrEqual(175_970);
    expect((plan.groups - 1) * plan.rowsPerGroup).toBeLessThan(175_970);
  });

  it("lets the footer win when both cannot hold, keeping it under 64 MiB at any row count", () => {
    for (const rows of [400_000, 1_000_000, 5_000_000]) {
      const plan = planRowGroups(rows, eurusd);
      expect(plan.limitedBy).toBe("footer");
      expect(plan.footerEstimateBytes).toBeLessThanOrEqual(FOOTER_LIMIT_BYTES);
      expect(plan.decodedGroupBytes).toBeGreaterThan(DECODED_ROW_GROUP_LIMIT_BYTES);
    }
  });

  it("makes one row group of a small sample and evens out the groups", () => {
    expect(planRowGroups(1_980, eurusd)).toMatchObject({ groups: 1, rowsPerGroup: 1_980, limitedBy: "both" });
    const narrow = planRowGroups(1_000, { columns: 70_000_000, footerBytesPerRowGroup: 100 });
    expect(narrow.groups * narrow.rowsPerGroup - 1_000).toBeLessThan(narrow.groups);
  });

  it("refuses an empty target", () => {
    expect(() => planRowGroups(0, eurusd)).toThrow(RangeError);
  });
});

describe("slices", () => {
  const plan = { rows: 175_970, rowsPerGroup: 3_911, groups: 45 };

  it("keeps a narrow table whole and cuts a wide one into even runs of whole row groups within the share", () => {
    expect(planSlices(plan, 14, 1.5 * 1024 ** 3)).toEqual([{ firstRowGroup: 0, endRowGroup: 45, firstRow: 0, endRow: 175_970 }]);
    const share = 512 * 1024 ** 2;
    const slices = planSlices(plan, 233, share);
    expect(slices.length).toBeGreaterThan(1);
    expect(slices[0]!.firstRowGroup).toBe(0);
    expect(slices.at(-1)!.endRowGroup).toBe(45);
    expect(slices.at(-1)!.endRow).toBe(175_970);
    for (let i = 1; i < slices.length; i++) expect(slices[i]!.firstRowGroup).toBe(slices[i - 1]!.endRowGroup);
    const sizes = slices.map((s) => s.endRowGroup - s.firstRowGroup);
    expect(Math.max(...sizes) - Math.min(...sizes)).toBeLessThanOrEqual(1);
    for (const s of slices) expect(sliceWorkingBytes(s.endRow - s.firstRow, 233)).toBeLessThanOrEqual(share);
  });

  it("gives a slice one row group at least, whatever the share", () => {
    expect(planSlices(plan, 233, 1)).toHaveLength(45);
  });
});
