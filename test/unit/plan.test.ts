import { describe, expect, it } from "vitest";
import { ALIGN_WORKING_SET_FACTOR, BYTES_PER_VALUE, MAX_ROW_GROUP_BYTES, MIN_RANGE_ROWS, WORKING_SET_FACTOR, planAlignment, planRowRanges } from "../../src/merge/plan.ts";

describe("merge planning", () => {
  it("sizes row ranges so the working set fits the budget at production width", () => {
    const plan = planRowRanges(177_748, 17_038, 2 * 1024 ** 3);
    expect(plan.rowsPerRange).toBe(Math.floor((2 * 1024 ** 3) / (17_038 * BYTES_PER_VALUE * WORKING_SET_FACTOR)));
    expect(plan.estimatedPeakBytes).toBeLessThanOrEqual(2 * 1024 ** 3);
    expect(plan.ranges.length).toBe(Math.ceil(177_748 / plan.rowsPerRange));
  });
  it("covers every row exactly once, in order", () => {
    const plan = planRowRanges(1_000, 500, 1024 ** 2);
    let next = 0;
    for (const [i, r] of plan.ranges.entries()) {
      expect(r.index).toBe(i);
      expect(r.start).toBe(next);
      expect(r.end).toBeGreaterThan(r.start);
      next = r.end;
    }
    expect(next).toBe(1_000);
  });
  it("keeps row groups small enough to stream even when the budget is large", () => {
    const plan = planRowRanges(177_748, 17_038, 64 * 1024 ** 3);
    expect(plan.rowsPerRange).toBe(Math.floor(MAX_ROW_GROUP_BYTES / (17_038 * BYTES_PER_VALUE)));
    expect(plan.ranges.length).toBeGreaterThan(40);
  });
  it("uses one range when everything fits and never goes below the minimum range", () => {
    expect(planRowRanges(500, 10, 1024 ** 3).ranges).toEqual([{ index: 0, start: 0, end: 500 }]);
    expect(planRowRanges(10_000, 1_000_000, 1).rowsPerRange).toBe(MIN_RANGE_ROWS);
  });
  it("plans nothing for no rows", () => {
    expect(planRowRanges(0, 100, 1024).ranges).toEqual([]);
  });
});

describe("planAlignment", () => {
  const GiB = 1024 ** 3;
  it("aligns two production tables at once within 3 GiB, and slices the widest at 2 GiB", () => {
    // EURUSD: 175,970 rows; most tables 15-40 columns, the reg tables 233.
    const widths = [50, 233, 25, 233, 40];
    const roomy = planAlignment(175_970, widths, 3 * GiB, 2, 3_938);
    expect(roomy).toEqual({ workers: 2, sliceRows: widths.map(() => 175_970) });
    const tight = planAlignment(175_970, widths, 2 * GiB, 2, 3_938);
    expect(tight.workers).toBe(2);
    expect(tight.sliceRows[0]).toBe(175_970);
    expect(tight.sliceRows[1]).toBeLessThan(175_970);
    expect(tight.sliceRows[1]! % 3_938).toBe(0);
    // Each worker's slice of the widest table fits its share of the budget.
    expect(tight.sliceRows[1]! * 233 * BYTES_PER_VALUE * ALIGN_WORKING_SET_FACTOR).toBeLessThanOrEqual(1 * GiB);
  });

  it("keeps slices the same size however many rows there are, so memory does not grow with rows", () => {
    const a = planAlignment(100_000, [75], 256 * 1024 ** 2, 2, 500);
    const b = planAlignment(400_000, [75], 256 * 1024 ** 2, 2, 500);
    expect(a.workers).toBe(1);
    expect(b.sliceRows[0]).toBe(a.sliceRows[0]);
    expect(a.sliceRows[0]).toBeLessThan(100_000);
  });

  it("never slices below one row group", () => {
    expect(planAlignment(10_000, [5_000], 64 * 1024 ** 2, 4, 700)).toEqual({ workers: 1, sliceRows: [700] });
  });
});
