import { describe, expect, it } from "vitest";
import { BYTES_PER_VALUE, MAX_ROW_GROUP_BYTES, MIN_RANGE_ROWS, WORKING_SET_FACTOR, planRowRanges } from "../../src/merge/plan.ts";

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
