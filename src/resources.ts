// What the container really has: CPU quota and memory limit from the job's own cgroup, not from
// os.cpus() or the host's RAM. /proc/self/cgroup names that cgroup; its limit files (and its
// ancestors', which bound it too) are under /sys/fs/cgroup. Cloud Run uses cgroup v2 (unified,
// usually namespaced so the path is "/"); this development host is cgroup v1, where a task's
// limit sits in a child cgroup such as /sys/fs/cgroup/memory/<path>. Reading the root's files
// instead once made the job plan for the host's 24 GiB inside a 12 GiB task. Read the job's own
// cgroup (v2, else v1), then fall back to the host's figures, and always say which source won.
import { existsSync, readFileSync, statfsSync } from "node:fs";
import os from "node:os";
import path from "node:path";

export interface Detected {
  value: number;
  /** Where the figure came from, e.g. "cgroup v2 /sys/fs/cgroup/cpu.max" or "os.availableParallelism()". */
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

/** The cgroup directories that bound this process for `controller`, innermost first. */
export function cgroupDirs(host: HostProbe, controller: "memory" | "cpu", root = "/sys/fs/cgroup"): { version: 1 | 2; dirs: string[] } {
  const lines = (host.readFile("/proc/self/cgroup") ?? "").split("\n").filter(Boolean);
  const unified = host.readFile(`${root}/cgroup.controllers`) !== undefined;
  const entry = unified ? lines.find((l) => l.startsWith("0::")) : lines.find((l) => l.split(":")[1]?.split(",").includes(controller));
  const cgroupPath = entry ? entry.slice(entry.indexOf(":", entry.indexOf(":") + 1) + 1) : "/";
  // v1 mounts each controller under its own directory ("cpu" is often a link to "cpu,cpuacct").
  const mount = unified ? root : `${root}/${controller}`;
  const parts = cgroupPath.split("/").filter(Boolean);
  const dirs: string[] = [];
  for (let n = parts.length; n >= 0; n -= 1) dirs.push([mount, ...parts.slice(0, n)].join("/"));
  return { version: unified ? 2 : 1, dirs };
}

export function detectCpus(host: HostProbe = realHost, root = "/sys/fs/cgroup"): Detected {
  const { version, dirs } = cgroupDirs(host, "cpu", root);
  let best: Detected | undefined;
  for (const dir of dirs) {
    let cpus: number | undefined;
    let shown = "";
    if (version === 2) {
      const text = host.readFile(`${dir}/cpu.max`)?.trim();
      const [quota, period] = text?.split(/\s+/) ?? [];
      if (quota && quota !== "max" && Number(quota) > 0 && Number(period) > 0) {
        cpus = Number(quota) / Number(period);
        shown = `cgroup v2 ${dir}/cpu.max (${text})`;
      }
    } else {
      const quota = Number(host.readFile(`${dir}/cpu.cfs_quota_us`)?.trim());
      const period = Number(host.readFile(`${dir}/cpu.cfs_period_us`)?.trim());
      if (Number.isFinite(quota) && quota > 0 && Number.isFinite(period) && period > 0) {
        cpus = quota / period;
        shown = `cgroup v1 ${dir}/cpu.cfs_quota_us (${quota}/${period})`;
      }
    }
    if (cpus !== undefined && (!best || Math.ceil(cpus) < best.value)) best = { value: Math.max(1, Math.ceil(cpus)), source: shown };
  }
  return best ?? { value: Math.max(1, host.availableParallelism()), source: "os.availableParallelism() (no cgroup CPU quota)" };
}

export function detectMemoryLimit(host: HostProbe = realHost, root = "/sys/fs/cgroup"): Detected {
  const { version, dirs } = cgroupDirs(host, "memory", root);
  let best: Detected | undefined;
  for (const dir of dirs) {
    const file = version === 2 ? `${dir}/memory.max` : `${dir}/memory.limit_in_bytes`;
    const text = host.readFile(file)?.trim();
    const bytes = Number(text);
    if (!text || text === "max" || !Number.isFinite(bytes) || bytes <= 0 || bytes >= V1_UNLIMITED_BYTES) continue;
    if (!best || bytes < best.value) best = { value: bytes, source: `cgroup v${version} ${file}` };
  }
  return best ?? { value: host.totalMemory(), source: "os.totalmem() (no cgroup memory limit)" };
}

/**
 * `dir`, or its nearest ancestor that exists: the filesystem a directory not made yet will be on
 * (WORK_DIR is created when the first part is written, after the memory plan looked at it).
 */
export function existingAncestor(dir: string): string {
  let at = path.resolve(dir);
  while (!existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  return at;
}

/** Bytes an unprivileged user may still write on the filesystem holding `dir` (or where it will be), or undefined when it cannot be read. */
export function freeBytes(dir: string): number | undefined {
  try {
    const { bavail, bsize } = statfsSync(existingAncestor(dir));
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

/** True when `dir` lives (or will live) on an in-memory filesystem (tmpfs/ramfs), as Cloud Run's built-in one does. */
export function isInMemoryFilesystem(dir: string): boolean {
  const TMPFS_MAGIC = 0x01021994;
  const RAMFS_MAGIC = 0x858458f6;
  try {
    const { type } = statfsSync(existingAncestor(dir));
    return type === TMPFS_MAGIC || type === RAMFS_MAGIC;
  } catch {
    return false;
  }
}
