import { describe, expect, it } from "vitest";
import { parseConfig, type HostFacts } from "../../src/config.ts";
import { ConfigError } from "../../src/errors.ts";

const host: HostFacts = {
  cpus: { value: 4, source: "cgroup v2 cpu.max (400000 100000)" },
  memoryLimit: { value: 12 * 1024 ** 3, source: "cgroup v2 memory.max" },
  stdoutIsTty: false,
  cwd: "/app",
  tmpDir: "/tmp",
};

function problemsFor(env: Record<string, string>): string[] {
  try {
    parseConfig(env, host);
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

describe("parseConfig", () => {
  it("reads a minimal environment with production defaults", () => {
    const c = parseConfig({ TARGET_PAIR: "eurusd" }, host);
    expect(c.pair).toBe("eurusd");
    expect(c.backend).toBe("local");
    expect(c.minRows).toBe(100_000);
    expect(c.minColumns).toBe(10_000);
    expect(c.featuresDataset).toBe("bqx_ml_v3_features_v2");
    expect(c.targetsDataset).toBe("bqx_ml_v3_analytics_v2");
    expect(c.maxWorkers).toBe(4);
    expect(c.maxWorkersSource).toContain("cpu.max");
    expect(c.memoryBudgetBytes).toBe(3 * 1024 ** 3);
    expect(c.warehouse).toBe("/app/data/warehouse.duckdb");
    expect(c.workDir).toBe("/tmp/bqx-training");
    expect(c.rowLimit).toBeUndefined();
    expect(c.keepCheckpoints).toBe(false);
    expect(c.logFormat).toBe("json");
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("refuses a missing TARGET_PAIR instead of defaulting to one", () => {
    expect(problemsFor({})).toEqual([expect.stringMatching(/^TARGET_PAIR: expected .*--update-env-vars TARGET_PAIR=<pair>.*\(got nothing\)$/)]);
  });

  it.each([
    ["", /got ""/],
    ["EURUSD", /did you mean eurusd/],
    ["eurusdx", /six lower-case letters/],
    ["abcdef", /one of eurusd gbpusd/],
    ["eurusd'; DROP TABLE x--", /six lower-case letters/],
    ["../../etc", /six lower-case letters/],
  ])("rejects TARGET_PAIR=%j with a message naming what is accepted", (pair, pattern) => {
    const problems = problemsFor({ TARGET_PAIR: pair });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^TARGET_PAIR: /);
    expect(problems[0]).toMatch(pattern);
  });

  it("reports every bad variable in one error, one line each, with what was given", () => {
    const problems = problemsFor({
      TARGET_PAIR: "eurusd",
      MEMORY_BUDGET: "lots",
      MAX_WORKERS: "0",
      ROW_LIMIT: "1e5",
      MIN_ROWS: "-3",
      DATE_FROM: "2020-13-01",
      KEEP_CHECKPOINTS: "maybe",
      LOG_LEVEL: "loud",
      FEATURES_DATASET: "a.b; drop",
      BACKEND: "aws",
      OUTPUT_URI: "s3://bucket",
    });
    expect(problems).toEqual([
      'BACKEND: expected "local" (the embedded DuckDB warehouse and a local bucket directory; "gcp" is not available in this version) (got "aws")',
      'OUTPUT_URI: expected a local directory for BACKEND=local (gs:// arrives with BACKEND=gcp) (got "s3://bucket")',
      'FEATURES_DATASET: expected a dataset name of letters, digits and underscores (got "a.b; drop")',
      'DATE_FROM: expected a date like 2020-01-01 (got "2020-13-01")',
      'ROW_LIMIT: expected a whole number from 1 to 9,007,199,254,740,991 (got "1e5")',
      'MAX_WORKERS: expected a whole number from 1 to 256 (got "0")',
      'MIN_ROWS: expected a whole number from 1 to 9,007,199,254,740,991 (got "-3")',
      'MEMORY_BUDGET: expected a size of at least 64MiB like 3GiB, 512MiB or 2GB (got "lots")',
      'KEEP_CHECKPOINTS: expected true or false (got "maybe")',
      "LOG_LEVEL: expected trace, debug, info, warn, error, fatal, silent (got \"loud\")",
    ]);
  });

  it("rejects a date range that ends before it starts", () => {
    expect(problemsFor({ TARGET_PAIR: "eurusd", DATE_FROM: "2024-01-01", DATE_TO: "2023-01-01" })).toEqual([
      "DATE_FROM/DATE_TO: expected DATE_FROM on or before DATE_TO (got 2024-01-01 > 2023-01-01)",
    ]);
  });

  it("takes explicit sizes, counts and switches", () => {
    const c = parseConfig(
      { TARGET_PAIR: "gbpjpy", MEMORY_BUDGET: "512MiB", MAX_WORKERS: "3", ROW_LIMIT: "100000", KEEP_CHECKPOINTS: "true", LOG_FORMAT: "pretty", WORK_DIR: "w" },
      host,
    );
    expect(c.memoryBudgetBytes).toBe(512 * 1024 ** 2);
    expect(c.memoryBudgetSource).toBe("MEMORY_BUDGET");
    expect(c.maxWorkers).toBe(3);
    expect(c.maxWorkersSource).toBe("MAX_WORKERS");
    expect(c.rowLimit).toBe(100_000);
    expect(c.keepCheckpoints).toBe(true);
    expect(c.logFormat).toBe("pretty");
    expect(c.workDir).toBe("/app/w");
  });
});
