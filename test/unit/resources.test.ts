import { describe, expect, it } from "vitest";
import { defaultMemoryBudget, detectCpus, detectMemoryLimit, type HostProbe } from "../../src/resources.ts";
import { parseSize } from "../../src/units.ts";

function host(files: Record<string, string>, cpus = 16, mem = 64 * 1024 ** 3): HostProbe {
  return { readFile: (p) => files[p], availableParallelism: () => cpus, totalMemory: () => mem };
}

describe("CPU detection", () => {
  it("reads the cgroup v2 quota as Cloud Run sets it", () => {
    expect(detectCpus(host({ "/sys/fs/cgroup/cpu.max": "400000 100000\n" }))).toEqual({ value: 4, source: "cgroup v2 cpu.max (400000 100000)" });
  });
  it("rounds a fractional quota up", () => {
    expect(detectCpus(host({ "/sys/fs/cgroup/cpu.max": "150000 100000" })).value).toBe(2);
  });
  it("falls through an unlimited v2 quota to v1, then to the host", () => {
    expect(
      detectCpus(host({ "/sys/fs/cgroup/cpu.max": "max 100000", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "200000", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000" })),
    ).toEqual({ value: 2, source: "cgroup v1 cpu.cfs_quota_us (200000/100000)" });
    expect(detectCpus(host({ "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000" }, 16))).toEqual({
      value: 16,
      source: "os.availableParallelism() (no cgroup CPU quota)",
    });
  });
});

describe("memory detection", () => {
  it("reads the cgroup v2 limit", () => {
    expect(detectMemoryLimit(host({ "/sys/fs/cgroup/memory.max": String(12 * 1024 ** 3) }))).toEqual({ value: 12 * 1024 ** 3, source: "cgroup v2 memory.max" });
  });
  it("treats v2 max and the v1 'unlimited' figure as no limit", () => {
    const d = detectMemoryLimit(host({ "/sys/fs/cgroup/memory.max": "max", "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712" }, 2, 24 * 1024 ** 3));
    expect(d).toEqual({ value: 24 * 1024 ** 3, source: "os.totalmem() (no cgroup memory limit)" });
  });
  it("reads a real cgroup v1 limit", () => {
    expect(detectMemoryLimit(host({ "/sys/fs/cgroup/memory/memory.limit_in_bytes": "4294967296" })).value).toBe(4 * 1024 ** 3);
  });
  it("budgets a quarter of the limit for the merge", () => {
    expect(defaultMemoryBudget(12 * 1024 ** 3)).toBe(3 * 1024 ** 3);
  });
});

describe("sizes", () => {
  it.each([
    ["3GiB", 3 * 1024 ** 3],
    ["12Gi", 12 * 1024 ** 3],
    ["512MiB", 512 * 1024 ** 2],
    ["2GB", 2e9],
    ["1073741824", 1024 ** 3],
    ["1.5GiB", 1.5 * 1024 ** 3],
  ])("parses %s", (text, bytes) => expect(parseSize(text)).toBe(bytes));
  it.each(["lots", "3 GiBs", "-1GiB", "", "1e9"])("rejects %j", (text) => expect(parseSize(text)).toBeUndefined());
});
