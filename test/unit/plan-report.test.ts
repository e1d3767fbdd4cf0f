import { describe, expect, it } from "vitest";
import {
  QUERY_MIN_BILLED_BYTES,
  QUERY_ON_DEMAND_USD_PER_TIB,
  STORAGE_READ_USD_PER_TIB,
  TIB,
  billedBytes,
  estimateCost,
  formatMaybeBytes,
  formatUsd,
} from "../../src/plan/cost.ts";
import { formatPlanTable, planMessage, type PairPlan } from "../../src/plan/report.ts";

const GIB = 1024 ** 3;

function plan(over: Partial<PairPlan> = {}): PairPlan {
  return {
    pair: "eurusd",
    backend: "gcp",
    ok: true,
    tables: 668,
    skippedTables: 2,
    columns: 17038,
    rowsEstimate: 177748,
    memory: {
      neededBytes: 4.5 * GIB,
      limitBytes: 12 * GIB,
      limitSource: "cgroup v2 memory.max",
      budgetBytes: 3 * GIB,
      budgetSource: "a quarter",
      workers: 4,
      tablesInFlight: 32,
      bytesPerWorker: 0.75 * GIB,
      duckdbBytesPerWorker: 0,
      fits: true,
      warnings: [],
    },
    workDir: { path: "/tmp/bqx-training", needBytes: 3 * GIB + 64 * 1024 ** 2, inMemory: true, freeBytes: 6 * GIB },
    scan: {
      route: "table",
      bytes: 22 * GIB,
      method: "BigQuery dry runs of the extraction queries (statistics.totalBytesProcessed)",
      measured: true,
      dryRuns: 668,
      upperBoundBytes: 24 * GIB,
    },
    cost: estimateCost("table", [22 * GIB]),
    checks: { datasets: "ok", output: "ok", readSessions: "ok" },
    seconds: 3.2,
    ...over,
  };
}

describe("read costs", () => {
  it("prices the table route at the Storage Read API's rate on the bytes scanned", () => {
    const cost = estimateCost("table", [TIB / 2, TIB / 2]);
    expect(cost).toMatchObject({ billedBytes: TIB, usdPerTiB: STORAGE_READ_USD_PER_TIB });
    expect(cost.usd).toBeCloseTo(STORAGE_READ_USD_PER_TIB, 12);
  });

  it("prices the query route at the on-demand rate, with 10 MB billed at least per read", () => {
    expect(billedBytes("query", [0, 1, QUERY_MIN_BILLED_BYTES + 5])).toBe(3 * QUERY_MIN_BILLED_BYTES + 5);
    const cost = estimateCost("query", [TIB]);
    expect(cost.usd).toBeCloseTo(QUERY_ON_DEMAND_USD_PER_TIB, 12);
    expect(cost.price).toMatch(/10 MB minimum per read/);
  });

  it("charges nothing for the local DuckDB file", () => {
    expect(estimateCost("local", [5 * TIB])).toEqual({ usd: 0, billedBytes: 0, usdPerTiB: 0, price: "local DuckDB file: no charge" });
  });

  it("formats dollars for a person", () => {
    expect([0, 0.004, 0.024, 12.345, 1234.4].map(formatUsd)).toEqual(["$0", "<$0.01", "$0.02", "$12.35", "$1,234"]);
    expect([undefined, null, 1536].map(formatMaybeBytes)).toEqual(["-", "-", "1.50 KiB"]);
  });
});

describe("the plan report", () => {
  it("says a pair's figures in one line", () => {
    expect(planMessage(plan())).toBe(
      "plan: eurusd: 668 tables, 17038 columns, ~177748 rows; memory ~4.50 GiB of 12.0 GiB; WORK_DIR up to 3.06 GiB (in memory); 22.0 GiB to scan (at most 24.0 GiB); $0.02",
    );
  });

  it("says a refusal in the same line, and an estimate with ~", () => {
    const refused = plan({
      ok: false,
      problem: { reason: "memory-plan", message: "memory plan does not fit: ...", fix: undefined },
      scan: { ...plan().scan!, measured: false, upperBoundBytes: null },
    });
    expect(planMessage(refused)).toMatch(/; ~22\.0 GiB to scan; \$0\.02; refused: memory plan does not fit: \.\.\.$/);
    expect(planMessage(plan({ ok: false, tables: null, problem: { reason: "discovery", message: "no targets_usdjpy", fix: undefined } }))).toBe(
      "plan: eurusd refused: no targets_usdjpy",
    );
  });

  it("prints an aligned table, a total under several pairs, how the figures were found and each refusal with its fix", () => {
    const other = plan({
      pair: "gbpusd",
      ok: false,
      tables: null,
      columns: null,
      rowsEstimate: null,
      memory: null,
      workDir: null,
      scan: null,
      cost: null,
      problem: { reason: "table-missing", message: "targets_gbpusd not found", fix: "load it" },
    });
    const text = formatPlanTable([plan(), other]);
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^pair\s+tables\s+columns\s+rows\s+memory need \/ limit\s+WORK_DIR need\s+scan\s+at most\s+USD\s+result$/);
    expect(lines[1]).toMatch(/^-+( +-+){9}$/);
    expect(lines[2]).toMatch(/^eurusd\s+668\s+17038\s+~177748\s+4\.50 GiB \/ 12\.0 GiB\s+3\.06 GiB \(RAM\)\s+22\.0 GiB\s+24\.0 GiB\s+\$0\.02\s+ok$/);
    expect(lines[3]).toMatch(/^gbpusd\s+-\s+-\s+-\s+-\s+-\s+-\s+-\s+-\s+refused \(table-missing\)$/);
    expect(lines[4]).toMatch(/^total\s+22\.0 GiB\s+\$0\.02\s+1 of 2 ok$/);
    // Numbers are right-aligned under their headers.
    expect(lines[2]!.indexOf(" 668 ") + 4).toBe(lines[0]!.indexOf("tables") + "tables".length);
    expect(lines[2]!.indexOf("17038") + 5).toBe(lines[0]!.indexOf("columns") + "columns".length);
    expect(lines[5]).toBe("scan: BigQuery dry runs of the extraction queries (statistics.totalBytesProcessed); at most: every column of every table");
    expect(lines[6]).toMatch(/^USD: Storage Read API on-demand, \$1\.1\/TiB read/);
    expect(lines[7]).toBe("gbpusd: targets_gbpusd not found Fix: load it");
  });
});
