// Peak resident memory of this process as the kernel accounts it.
import { readFileSync } from "node:fs";

/**
 * VmHWM from /proc/self/status. Not process.resourceUsage().maxRSS: on Linux a child keeps the
 * peak of the parent it was forked from across exec, so a child of a large process would report
 * the parent's figure.
 */
export function peakRssBytes(): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux: fall through
  }
  return process.resourceUsage().maxRSS * 1024;
}
