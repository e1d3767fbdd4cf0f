import { describe, expect, it } from "vitest";
import { defaultMemoryBudget } from "../../src/memory-plan.ts";
import { detectCpus, detectMemoryLimit, type HostProbe } from "../../src/resources.ts";
import { parseSize } from "../../src/units.ts";

function host(files: Record<string, string>, cpus = 16, mem = 64 * 1024 ** 3): HostProbe {
  return { readFile: (p) => files[p], availableParallelism: () => cpus, totalMemory: () => mem };
}

/** /proc/self/cgroup of a Cloud Run task (cgroup v2, namespaced: the task's own cgroup is "/"). */
const V2_NAMESPACED = { "/proc/self/cgroup": "0::/\n", "/sys/fs/cgroup/cgroup.controllers": "cpu memory pids\n" };
/** This development host: cgroup v1, the job in a child memory cgroup (as cloudrun-sim puts it). */
const V1_CHILD = "4:memory:/process_api/abc/cloudrun-sim-42\n2:cpuacct:/\n1:cpu:/cloudrun-sim-42\n0::/\n";

describe("CPU detection", () => {
  it("reads the cgroup v2 quota as Cloud Run sets it", () => {
    expect(detectCpus(host({ ...V2_NAMESPACED, "/sys/fs/cgroup/cpu.max": "400000 100000\n" }))).toEqual({
      value: 4,
      source: "cgroup v2 /sys/fs/cgroup/cpu.max (400000 100000)",
    });
  });
  it("rounds a fractional quota up", () => {
    expect(detectCpus(host({ ...V2_NAMESPACED, "/sys/fs/cgroup/cpu.max": "150000 100000" })).value).toBe(2);
  });
  it("reads the quota of the job's own v2 cgroup named in /proc/self/cgroup, not the root's", () => {
    const files = {
      "/proc/self/cgroup": "0::/jobs/task-1\n",
      "/sys/fs/cgroup/cgroup.controllers": "cpu memory\n",
      "/sys/fs/cgroup/cpu.max": "max 100000",
      "/sys/fs/cgroup/jobs/task-1/cpu.max": "200000 100000",
    };
    expect(detectCpus(host(files))).toEqual({ value: 2, source: "cgroup v2 /sys/fs/cgroup/jobs/task-1/cpu.max (200000 100000)" });
  });
  it("takes the tightest quota among the job's cgroup and its ancestors", () => {
    const files = {
      "/proc/self/cgroup": "0::/jobs/task-1\n",
      "/sys/fs/cgroup/cgroup.controllers": "cpu\n",
      "/sys/fs/cgroup/jobs/cpu.max": "100000 100000",
      "/sys/fs/cgroup/jobs/task-1/cpu.max": "400000 100000",
    };
    expect(detectCpus(host(files)).value).toBe(1);
  });
  it("reads a v1 quota from the cpu cgroup /proc/self/cgroup names", () => {
    const files = {
      "/proc/self/cgroup": V1_CHILD,
      "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1",
      "/sys/fs/cgroup/cpu/cloudrun-sim-42/cpu.cfs_quota_us": "200000",
      "/sys/fs/cgroup/cpu/cloudrun-sim-42/cpu.cfs_period_us": "100000",
    };
    expect(detectCpus(host(files))).toEqual({ value: 2, source: "cgroup v1 /sys/fs/cgroup/cpu/cloudrun-sim-42/cpu.cfs_quota_us (200000/100000)" });
  });
  it("falls back to the host when no cgroup sets a quota", () => {
    expect(detectCpus(host({ ...V2_NAMESPACED, "/sys/fs/cgroup/cpu.max": "max 100000" }, 16))).toEqual({
      value: 16,
      source: "os.availableParallelism() (no cgroup CPU quota)",
    });
    expect(
      detectCpus(host({ "/proc/self/cgroup": V1_CHILD, "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1", "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000" }, 16))
        .value,
    ).toBe(16);
  });
});

describe("memory detection", () => {
  it("reads the cgroup v2 limit", () => {
    expect(detectMemoryLimit(host({ ...V2_NAMESPACED, "/sys/fs/cgroup/memory.max": String(12 * 1024 ** 3) }))).toEqual({
      value: 12 * 1024 ** 3,
      source: "cgroup v2 /sys/fs/cgroup/memory.max",
    });
  });
  it("reads the limit of the job's own v1 memory cgroup, not the root's unlimited one", () => {
    const files = {
      "/proc/self/cgroup": V1_CHILD,
      "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712",
      "/sys/fs/cgroup/memory/process_api/abc/memory.limit_in_bytes": "9223372036854771712",
      "/sys/fs/cgroup/memory/process_api/abc/cloudrun-sim-42/memory.limit_in_bytes": String(12 * 1024 ** 3),
    };
    expect(detectMemoryLimit(host(files, 2, 24 * 1024 ** 3))).toEqual({
      value: 12 * 1024 ** 3,
      source: "cgroup v1 /sys/fs/cgroup/memory/process_api/abc/cloudrun-sim-42/memory.limit_in_bytes",
    });
  });
  it("takes an ancestor's limit when it is tighter than the job's own", () => {
    const files = {
      "/proc/self/cgroup": "0::/a/b\n",
      "/sys/fs/cgroup/cgroup.controllers": "memory\n",
      "/sys/fs/cgroup/a/memory.max": String(2 * 1024 ** 3),
      "/sys/fs/cgroup/a/b/memory.max": "max",
    };
    expect(detectMemoryLimit(host(files)).value).toBe(2 * 1024 ** 3);
  });
  it("treats v2 max and the v1 'unlimited' figure as no limit", () => {
    expect(detectMemoryLimit(host({ ...V2_NAMESPACED, "/sys/fs/cgroup/memory.max": "max" }, 2, 24 * 1024 ** 3))).toEqual({
      value: 24 * 1024 ** 3,
      source: "os.totalmem() (no cgroup memory limit)",
    });
    expect(
      detectMemoryLimit(host({ "/proc/self/cgroup": V1_CHILD, "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712" }, 2, 24 * 1024 ** 3)).value,
    ).toBe(24 * 1024 ** 3);
  });
  it("reads the real machine's own cgroup without throwing", () => {
    const d = detectMemoryLimit();
    expect(d.value).toBeGreaterThan(0);
    expect(d.source).toMatch(/^(cgroup v[12] \/sys\/fs\/cgroup\/\S+|os\.totalmem\(\) \(no cgroup memory limit\))$/);
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
