import { describe, expect, it } from "vitest";
import { RUNTIME_BYTES, STORED_BYTES_PER_VALUE, planMemory, type MemoryPlanInput } from "../../src/preflight.ts";

const GiB = 1024 ** 3;
/** EURUSD as in REFERENCE.md: 668 tables, 177,748 rows, 17,038 output columns. */
const eurusd: MemoryPlanInput = {
  tables: [{ rows: 177_748, columns: 50 }, ...Array.from({ length: 667 }, () => ({ rows: 177_748, columns: 1 + 16_988 / 667 }))],
  targetRows: 177_748,
  outputColumns: 17_038,
  rowLimit: undefined,
  budgetBytes: 3 * GiB,
  memoryLimitBytes: 12 * GiB,
  memoryLimitSource: "cgroup v2 memory.max",
  workDir: "/tmp/bqx-training",
  workDirInMemory: true,
  workDirFreeBytes: undefined,
};

describe("the pre-flight memory plan", () => {
  it("errs on the safe side of the production sizes, within 1.7x", () => {
    const plan = planMemory({ ...eurusd, workDirInMemory: false });
    // Production: 11.8 GiB of checkpoints for AUDUSD, a 9.27 GiB training file for EURUSD. The
    // estimate comes from the sample's random values, which compress worse than real data.
    expect(plan.checkpointBytes / GiB).toBeGreaterThanOrEqual(11.8);
    expect(plan.checkpointBytes / GiB).toBeLessThan(11.8 * 1.7);
    expect(plan.outputBytes / GiB).toBeGreaterThanOrEqual(9.27);
    expect(plan.outputBytes / GiB).toBeLessThan(9.27 * 1.7);
    expect(plan.fits).toBe(true);
  });

  it("refuses Cloud Run's in-memory /tmp at 12 GiB and says why and what to do", () => {
    const plan = planMemory(eurusd);
    expect(plan.fits).toBe(false);
    expect(plan.problems).toHaveLength(1);
    expect(plan.problems[0]).toMatch(/^memory plan does not fit: runtime ~512 MiB \+ merge working set ~[\d.]+ GiB \(MEMORY_BUDGET 3\.00 GiB\) \+ files in WORK_DIR \/tmp\/bqx-training, which is in memory \(tmpfs\): checkpoints ~[\d.]+ GiB, output ~[\d.]+ GiB with the merge's parts/);
    expect(plan.problems[0]).toMatch(/but the limit is 12\.0 GiB \(cgroup v2 memory\.max\)\. Fix: mount a volume for WORK_DIR .*raise the job's memory \(--memory\), or lower MEMORY_BUDGET$/);
  });

  it("fits the same run with WORK_DIR on a mounted volume", () => {
    const plan = planMemory({ ...eurusd, workDirInMemory: false, workDirFreeBytes: 100 * GiB });
    expect(plan.fits).toBe(true);
    expect(plan.memoryNeededBytes).toBe(RUNTIME_BYTES + plan.mergeWorkingBytes);
    expect(plan.memoryNeededBytes).toBeLessThanOrEqual(RUNTIME_BYTES + 3 * GiB);
  });

  it("counts the output once, plus the aligned tables waiting to be appended", () => {
    const plan = planMemory({ ...eurusd, workDirInMemory: false });
    expect(plan.diskBytes).toBeCloseTo(plan.checkpointBytes + 1.1 * plan.outputBytes);
  });

  it("refuses a disk too small for checkpoints and output", () => {
    const plan = planMemory({ ...eurusd, workDirInMemory: false, workDirFreeBytes: 10 * GiB });
    expect(plan.problems).toEqual([expect.stringMatching(/^WORK_DIR \/tmp\/bqx-training has 10\.0 GiB free but the run needs ~[\d.]+ GiB/)]);
  });

  it("counts ROW_LIMIT and small samples", () => {
    const limited = planMemory({ ...eurusd, rowLimit: 100_000, workDirInMemory: false });
    expect(limited.outputBytes).toBeCloseTo(100_000 * 17_038 * STORED_BYTES_PER_VALUE);
    const sample = planMemory({ ...eurusd, tables: eurusd.tables.map((t) => ({ ...t, rows: 2_000 })), targetRows: 2_000 });
    expect(sample.fits).toBe(true);
  });
});
