// Row coverage of the sample's tables: which minutes each holds (what build.ts writes). Pure, so
// tests can predict every table's row count and the training file's.
import { TARGET_ROW_FILTER_COLUMN } from "../../src/constants.ts";
import { nameHash, type SampleTable } from "./spec.ts";

/** Which minutes of [0, rows) a table holds: from `startOffset`, less one every `gapEvery` (at `gapPhase`). */
export interface SampleCoverage {
  startOffset: number;
  gapEvery: number | null;
  gapPhase: number;
}

/**
 * Minutes of [0, rows) a table holds. Targets and most pair-level families are complete; lag
 * tables start late (the first minutes have no lag yet); corr, mkt, var and csi start a few minutes
 * late; corr, cov, tri and mkt miss one minute every few hundred. Never a repeated minute.
 */
export function tableCoverage(table: Pick<SampleTable, "name" | "family" | "dataset">): SampleCoverage {
  const h = nameHash(`${table.name}#coverage`);
  const full: SampleCoverage = { startOffset: 0, gapEvery: null, gapPhase: 0 };
  if (table.dataset === "targets") return full;
  const late = (max: number) => 1 + (h % max);
  const gaps = (every: number) => ({ gapEvery: every, gapPhase: (h >>> 8) % every });
  switch (table.family) {
    case "lag":
      return { ...full, startOffset: late(3) };
    case "corr":
      return { startOffset: late(5), ...gaps(211) };
    case "cov":
      return { startOffset: 0, ...gaps(997) };
    case "tri":
      return { startOffset: (h >>> 4) % 3, ...gaps(389) };
    case "mkt":
      return { startOffset: late(2), ...gaps(593) };
    case "var":
    case "csi":
      return { ...full, startOffset: late(2) };
    default:
      return full;
  }
}

/** How many rows a table with interval_time holds when the sample has `rows` minutes. */
export function coveredRows(coverage: SampleCoverage, rows: number): number {
  const start = Math.min(coverage.startOffset, rows);
  let n = rows - start;
  if (coverage.gapEvery !== null) {
    const every = coverage.gapEvery;
    // Count i in [start, rows) with i % every === phase.
    const upTo = (end: number) => (end <= coverage.gapPhase ? 0 : Math.floor((end - 1 - coverage.gapPhase) / every) + 1);
    n -= upTo(rows) - upTo(start);
  }
  return n;
}

/** Rows of a summary table (no interval_time): one a day. */
export function summaryRows(rows: number): number {
  return Math.max(1, Math.ceil(rows / 1440));
}

/**
 * Trailing rows of the target table where `column` is NULL: the last ~1 % for the 15-minute
 * horizon (no future to look at), growing with the horizon.
 */
export function targetNullTailRows(column: string, rows: number): number {
  const m = /_h(\d+)$/.exec(column);
  const horizon = m ? Number(m[1]) : 15;
  const base = Math.max(1, Math.ceil(rows * 0.01));
  return Math.min(rows, base + Math.max(0, horizon - 15));
}

/** Rows of the training file built from a sample of `rows` minutes: target rows with a 15-minute target. */
export function trainingRowCount(rows: number): number {
  return rows - targetNullTailRows(TARGET_ROW_FILTER_COLUMN, rows);
}
