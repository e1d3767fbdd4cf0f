// What the container really has: CPU quota and memory limit from the cgroup, not from os.cpus().
// Cloud Run uses cgroup v2; this development host is cgroup v1. Read v2, then v1, then fall back
// to the host's figures, and always say which source won so the logs show it.
import { readFileSync, statfsSync } from "node:fs";
import os from "node:os";

export interface Detected {
  value: number;
  /** Where the figure came from, e.g. "cgroup v2 cpu.max" or "os.availableParallelism()". */
  source: string;
}

export interface HostProbe {
  readFile(path: string): string | undefined;
  availableParallelism(): number;
  totalMemory(): number;
}

export const realHost: HostProbe = {
  readFile(path) {
    try {
      return readFileSync(path, "utf8");
    } catch {
      return undefined;
    }
  },
  availableParallelism: () => os.availableParallelism(),
  totalMemory: () => os.totalmem(),
};

/** Above this a cgroup v1 memory limit means "unlimited" (the kernel reports ~2^63 rounded to pages). */
const V1_UNLIMITED_BYTES = 2 ** 60;

export function detectCpus(host: HostProbe = realHost, root = "/sys/fs/cgroup"): Detected {
  const v2 = host.readFile(`${root}/cpu.max`)?.trim();
  if (v2) {
    const [quota, period] = v2.split(/\s+/);
    if (quota !== "max" && quota && period && Number(period) > 0) {
      return { value: Math.max(1, Math.ceil(Number(quota) / Number(period))), source: `cgroup v2 cpu.max (${v2})` };
    }
  }
  const quota = Number(host.readFile(`${root}/cpu/cpu.cfs_quota_us`)?.trim());
  const period = Number(host.readFile(`${root}/cpu/cpu.cfs_period_us`)?.trim());
  if (Number.isFinite(quota) && quota > 0 && Number.isFinite(period) && period > 0) {
    return { value: Math.max(1, Math.ceil(quota / period)), source: `cgroup v1 cpu.cfs_quota_us (${quota}/${period})` };
  }
  return { value: Math.max(1, host.availableParallelism()), source: "os.availableParallelism() (no cgroup CPU quota)" };
}

export function detectMemoryLimit(host: HostProbe = realHost, root = "/sys/fs/cgroup"): Detected {
  const v2 = host.readFile(`${root}/memory.max`)?.trim();
  if (v2 && v2 !== "max" && Number(v2) > 0) {
    return { value: Number(v2), source: "cgroup v2 memory.max" };
  }
  const v1 = Number(host.readFile(`${root}/memory/memory.limit_in_bytes`)?.trim());
  if (Number.isFinite(v1) && v1 > 0 && v1 < V1_UNLIMITED_BYTES) {
    return { value: v1, source: "cgroup v1 memory.limit_in_bytes" };
  }
  return { value: host.totalMemory(), source: "os.totalmem() (no cgroup memory limit)" };
}

/**
 * The merge's default budget: a quarter of the container's memory, leaving room for the
 * Node heap, the worker pool and, on Cloud Run, the in-memory filesystem holding the files.
 */
export function defaultMemoryBudget(limitBytes: number): number {
  return Math.max(256 * 1024 ** 2, Math.floor(limitBytes / 4));
}

/** Bytes an unprivileged user may still write on the filesystem holding `dir`, or undefined when it cannot be read. */
export function freeBytes(dir: string): number | undefined {
  try {
    const { bavail, bsize } = statfsSync(dir);
    return bavail * bsize;
  } catch {
    return undefined;
  }
}

/** Whether process `pid` is still running (EPERM: it is, under another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** True when `path` lives on an in-memory filesystem (tmpfs/ramfs), as Cloud Run's built-in one does. */
export function isInMemoryFilesystem(path: string): boolean {
  const TMPFS_MAGIC = 0x01021994;
  const RAMFS_MAGIC = 0x858458f6;
  try {
    const { type } = statfsSync(path);
    return type === TMPFS_MAGIC || type === RAMFS_MAGIC;
  } catch {
    return false;
  }
}
