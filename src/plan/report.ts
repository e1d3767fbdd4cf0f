// A pair's plan as figures (one JSON object, logged once per pair) and as a table for a person.
// Pure: stages/plan.ts gathers the figures, this only shapes and prints them.
import { formatBytes } from "../units.ts";
import { formatMaybeBytes, formatUsd, type ReadRoute } from "./cost.ts";

export interface PairPlan {
  pair: string;
  backend: "local" | "gcp";
  /** Nothing stands in the run's way (every check passed, the memory plan fits). */
  ok: boolean;
  /** The first refusal, as the run would give it (undefined when ok). */
  problem?: { reason: string; message: string; fix: string | undefined } | undefined;
  /** Feature tables + the target; null when discovery itself was refused. */
  tables: number | null;
  skippedTables: number | null;
  columns: number | null;
  /** The target's rows, from the warehouse's metadata (capped by ROW_LIMIT), when it tells. */
  rowsEstimate: number | null;
  memory: {
    neededBytes: number;
    limitBytes: number;
    limitSource: string;
    budgetBytes: number;
    budgetSource: string;
    workers: number;
    /** Tables read at once at most (within the budget). */
    tablesInFlight: number;
    /** Each worker's share of the budget: a table wider than this is aligned in slices. */
    bytesPerWorker: number;
    /** DuckDB's memory limit per worker (BACKEND=local). */
    duckdbBytesPerWorker: number;
    fits: boolean;
    warnings: string[];
  } | null;
  workDir: { path: string; needBytes: number; inMemory: boolean; freeBytes: number | null } | null;
  scan: {
    route: ReadRoute;
    /** What the reads scan: BigQuery's dry runs, or the local estimate. */
    bytes: number;
    method: string;
    measured: boolean;
    dryRuns: number;
    /** Every column of every table (INFORMATION_SCHEMA.PARTITIONS total_logical_bytes), BigQuery only. */
    upperBoundBytes: number | null;
  } | null;
  cost: { usd: number; billedBytes: number; usdPerTiB: number; price: string } | null;
  /** The permission checks the run makes first, and how each went. */
  checks: { datasets: CheckResult; output: CheckResult; readSessions: CheckResult };
  seconds: number;
}

export type CheckResult = "ok" | "failed" | "not needed" | "not reached";

/** The one line per pair: its message for a person, the figures in `plan` for a machine. */
export function planMessage(p: PairPlan): string {
  if (!p.ok && p.tables === null) return `plan: ${p.pair} refused: ${p.problem?.message ?? "?"}`;
  const scan = p.scan
    ? `${p.scan.measured ? "" : "~"}${formatBytes(p.scan.bytes)} to scan${p.scan.upperBoundBytes !== null ? ` (at most ${formatBytes(p.scan.upperBoundBytes)})` : ""}`
    : "scan unknown";
  const memory = p.memory ? `memory ~${formatBytes(p.memory.neededBytes)} of ${formatBytes(p.memory.limitBytes)}${p.memory.fits ? "" : " (does not fit)"}` : "";
  const work = p.workDir ? `WORK_DIR up to ${formatBytes(p.workDir.needBytes)}${p.workDir.inMemory ? " (in memory)" : ""}` : "";
  const head = `plan: ${p.pair}: ${p.tables} tables, ${p.columns} columns${p.rowsEstimate !== null ? `, ~${p.rowsEstimate} rows` : ""}; ${[memory, work, scan].filter(Boolean).join("; ")}; ${p.cost ? formatUsd(p.cost.usd) : "cost unknown"}`;
  return p.ok ? head : `${head}; refused: ${p.problem?.message ?? "?"}`;
}

const HEADERS = ["pair", "tables", "columns", "rows", "memory need / limit", "WORK_DIR need", "scan", "at most", "USD", "result"] as const;

function row(p: PairPlan): string[] {
  return [
    p.pair,
    p.tables === null ? "-" : String(p.tables),
    p.columns === null ? "-" : String(p.columns),
    p.rowsEstimate === null ? "-" : `~${p.rowsEstimate}`,
    p.memory ? `${formatBytes(p.memory.neededBytes)} / ${formatBytes(p.memory.limitBytes)}` : "-",
    p.workDir ? `${formatBytes(p.workDir.needBytes)}${p.workDir.inMemory ? " (RAM)" : ""}` : "-",
    p.scan ? `${p.scan.measured ? "" : "~"}${formatBytes(p.scan.bytes)}` : "-",
    formatMaybeBytes(p.scan?.upperBoundBytes),
    p.cost ? formatUsd(p.cost.usd) : "-",
    p.ok ? "ok" : `refused (${p.problem?.reason ?? "?"})`,
  ];
}

/** The plans as an aligned text table, a total line under several pairs, and how the figures were found. */
export function formatPlanTable(plans: readonly PairPlan[]): string {
  const rows = [HEADERS.map(String), ...plans.map(row)];
  if (plans.length > 1) {
    const scanned = plans.reduce((n, p) => n + (p.scan?.bytes ?? 0), 0);
    const usd = plans.reduce((n, p) => n + (p.cost?.usd ?? 0), 0);
    const ok = plans.filter((p) => p.ok).length;
    rows.push(["total", "", "", "", "", "", formatBytes(scanned), "", formatUsd(usd), `${ok} of ${plans.length} ok`]);
  }
  const widths = HEADERS.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const lines = rows.map((r) =>
    r
      .map((cell, c) => (c === 0 || c === r.length - 1 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!)))
      .join("  ")
      .trimEnd(),
  );
  lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  const first = plans.find((p) => p.scan);
  const notes = [
    ...(first?.scan ? [`scan: ${first.scan.method}${first.scan.measured ? "" : " (~ marks an estimate)"}; at most: every column of every table`] : []),
    ...(first?.cost ? [`USD: ${first.cost.price}`] : []),
    ...plans.filter((p) => !p.ok).map((p) => `${p.pair}: ${p.problem?.message ?? "?"}${p.problem?.fix ? ` Fix: ${p.problem.fix}` : ""}`),
  ];
  return [...lines, ...notes].join("\n");
}
