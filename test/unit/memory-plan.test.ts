import { describe, expect, it } from "vitest";
import {
  ASSEMBLY_BYTES,
  READ_BUFFERS_PER_WORKER_BYTES,
  RUNTIME_BYTES,
  duckdbMemoryPerWorker,
  planMemory,
  type MemoryPlanInput,
} from "../../src/memory-plan.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
/** The seed guide's deployment: 4 vCPU, 12 GiB, Cloud Run's in-memory filesystem, the default budget. */
const cloudRun: MemoryPlanInput = {
  backend: "gcp",
  workers: 4,
  budgetBytes: 3 * GiB,
  memoryLimitBytes: 12 * GiB,
  memoryLimitSource: "cgroup v2 /sys/fs/cgroup/memory.max",
  widestRowGroupBytes: 40 * MiB,
  workDir: "/tmp/bqx-training",
  workDirInMemory: true,
  workDirFreeBytes: undefined,
};

describe("the pre-flight memory plan", () => {
  it("fits the seed guide's deployment: the file is assembled in the bucket, only the work in flight counts", () => {
    const plan = planMemory(cloudRun);
    expect(plan.fits).toBe(true);
    expect(plan.memoryNeededBytes).toBe(RUNTIME_BYTES + 3 * GiB + ASSEMBLY_BYTES + plan.uploadBytes);
    expect(plan.memoryNeededBytes).toBeLessThan(4.5 * GiB);
  });

  it("counts each worker's DuckDB on the embedded backend, sized from the limit and never DuckDB's default", () => {
    const plan = planMemory({ ...cloudRun, backend: "local", workers: 2 });
    expect(plan.warehouseBytes).toBe(2 * (duckdbMemoryPerWorker(12 * GiB) + READ_BUFFERS_PER_WORKER_BYTES));
    expect(duckdbMemoryPerWorker(12 * GiB)).toBe(384 * MiB);
    expect(duckdbMemoryPerWorker(1 * GiB)).toBe(128 * MiB);
    expect(duckdbMemoryPerWorker(64 * GiB)).toBe(512 * MiB);
    expect(plan.uploadBytes).toBe(0);
  });

  it("refuses a budget the container cannot hold, with the numbers and the budget that would fit", () => {
    const plan = planMemory({ ...cloudRun, budgetBytes: 11.5 * GiB });
    expect(plan.fits).toBe(false);
    expect(plan.problems).toHaveLength(1);
    expect(plan.problems[0]).toMatch(
      /^memory plan does not fit: runtime ~512 MiB \+ tables in flight ~11\.5 GiB \(MEMORY_BUDGET 11\.5 GiB\) \+ footers ~192 MiB \+ upload buffers ~128 MiB = ~12\.3 GiB, but the limit is 12\.0 GiB/,
    );
    expect(plan.problems[0]).toMatch(/Fix: set MEMORY_BUDGET to [\d.]+ GiB or less, or raise the job's memory \(--memory\)$/);
  });

  it("fits a small container with a small budget: nothing scales with the file", () => {
    expect(planMemory({ ...cloudRun, memoryLimitBytes: 2 * GiB, budgetBytes: 1 * GiB }).fits).toBe(true);
  });

  it("warns, rather than refusing, when one row group of the widest table is larger than the budget", () => {
    const plan = planMemory({ ...cloudRun, budgetBytes: 256 * MiB, widestRowGroupBytes: 300 * MiB });
    expect(plan.fits).toBe(true);
    expect(plan.extractionBytes).toBe(300 * MiB);
    expect(plan.warnings).toEqual([expect.stringMatching(/one row group of the widest table needs ~300 MiB to align, more than MEMORY_BUDGET 256 MiB/)]);
  });

  it("refuses a WORK_DIR on disk too small for the part files in flight", () => {
    const plan = planMemory({ ...cloudRun, workDirInMemory: false, workDirFreeBytes: 1 * GiB });
    expect(plan.problems).toEqual([expect.stringMatching(/^WORK_DIR \/tmp\/bqx-training has 1\.00 GiB free, less than the part files in flight may take/)]);
  });
});
