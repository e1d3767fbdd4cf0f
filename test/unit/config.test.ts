import { describe, expect, it } from "vitest";
import { effectiveConfig, parseConfig, type HostFacts } from "../../src/config.ts";
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
  it("reads PLAN_ONLY (true or false, off by default) and keeps the whole PAIRS list for one task", () => {
    expect(parseConfig({ TARGET_PAIR: "eurusd" }, host).planOnly).toBe(false);
    expect(parseConfig({ TARGET_PAIR: "eurusd", PLAN_ONLY: "false" }, host).planOnly).toBe(false);
    const c = parseConfig({ PAIRS: "all", PLAN_ONLY: "TRUE" }, host);
    expect(c.planOnly).toBe(true);
    expect(c.pairs).toHaveLength(28);
    expect(effectiveConfig(c)).toMatchObject({ PLAN_ONLY: true });
    expect(problemsFor({ TARGET_PAIR: "eurusd", PLAN_ONLY: "yes" })).toEqual([
      'PLAN_ONLY: expected true or false (true: print the plan of each pair and exit, reading no table) (got "yes")',
    ]);
    expect(problemsFor({ PAIRS: "all", PLAN_ONLY: "true", CLOUD_RUN_TASK_COUNT: "7", CLOUD_RUN_TASK_INDEX: "2" })).toEqual([
      'CLOUD_RUN_TASK_COUNT: expected 1 with PLAN_ONLY=true: one task plans every pair listed (execute with --tasks 1) (got "7")',
    ]);
  });

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
    expect(c.logFormat).toBe("json");
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("compares schemas with SCHEMA_CHANGE=warn unless told otherwise, and records the policy", () => {
    expect(parseConfig({ TARGET_PAIR: "eurusd" }, host).schemaChange).toBe("warn");
    for (const policy of ["allow", "warn", "fail"] as const) {
      const c = parseConfig({ TARGET_PAIR: "eurusd", SCHEMA_CHANGE: policy }, host);
      expect(c.schemaChange).toBe(policy);
      expect(effectiveConfig(c).SCHEMA_CHANGE).toBe(policy);
    }
    expect(parseConfig({ TARGET_PAIR: "eurusd", SCHEMA_CHANGE: " FAIL " }, host).schemaChange).toBe("fail");
  });

  it.each(["strict", "error", "true", "warning"])("refuses SCHEMA_CHANGE=%s in one line naming the accepted values", (value) => {
    expect(problemsFor({ TARGET_PAIR: "eurusd", SCHEMA_CHANGE: value })).toEqual([
      `SCHEMA_CHANGE: expected allow, warn or fail (what to do when the columns or tables differ from the published file's) (got ${JSON.stringify(value)})`,
    ]);
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
      LOG_LEVEL: "loud",
      FEATURES_DATASET: "a.b; drop",
      BACKEND: "aws",
      OUTPUT_URI: "s3://bucket",
    });
    expect(problems).toEqual([
      'BACKEND: expected "local" (the embedded DuckDB warehouse) or "gcp" (BigQuery) (got "aws")',
      'OUTPUT_URI: expected a local directory or gs://<bucket>/<prefix> (got "s3://bucket")',
      'FEATURES_DATASET: expected a dataset name of letters, digits and underscores (got "a.b; drop")',
      'DATE_FROM: expected a date like 2020-01-01 (got "2020-13-01")',
      'ROW_LIMIT: expected a whole number from 1 to 9,007,199,254,740,991 (got "1e5")',
      'MAX_WORKERS: expected a whole number from 1 to 256 (got "0")',
      'MIN_ROWS: expected a whole number from 1 to 9,007,199,254,740,991 (got "-3")',
      'MEMORY_BUDGET: expected a size of at least 64MiB like 3GiB, 512MiB or 2GB (got "lots")',
      'LOG_LEVEL: expected trace, debug, info, warn, error, fatal, silent (got "loud")',
    ]);
  });

  it("rejects a date range that ends before it starts", () => {
    expect(problemsFor({ TARGET_PAIR: "eurusd", DATE_FROM: "2024-01-01", DATE_TO: "2023-01-01" })).toEqual([
      "DATE_FROM/DATE_TO: expected DATE_FROM on or before DATE_TO (got 2024-01-01 > 2023-01-01)",
    ]);
  });

  it("takes explicit sizes, counts and switches", () => {
    const c = parseConfig({ TARGET_PAIR: "gbpjpy", MEMORY_BUDGET: "512MiB", MAX_WORKERS: "3", ROW_LIMIT: "100000", LOG_FORMAT: "pretty", WORK_DIR: "w" }, host);
    expect(c.memoryBudgetBytes).toBe(512 * 1024 ** 2);
    expect(c.memoryBudgetSource).toBe("MEMORY_BUDGET");
    expect(c.maxWorkers).toBe(3);
    expect(c.maxWorkersSource).toBe("MAX_WORKERS");
    expect(c.rowLimit).toBe(100_000);
    expect(c.logFormat).toBe("pretty");
    expect(c.workDir).toBe("/app/w");
  });

  it("reads the production settings for BACKEND=gcp", () => {
    const c = parseConfig(
      {
        TARGET_PAIR: "eurusd",
        BACKEND: "gcp",
        GCP_PROJECT: "bqx-ml",
        BQ_LOCATION: "us-central1",
        OUTPUT_URI: "gs://bqx-ml-output/training/",
        QUERY_TIMEOUT: "90s",
      },
      host,
    );
    expect(c.backend).toBe("gcp");
    expect(c.gcp).toEqual({
      project: "bqx-ml",
      location: "us-central1",
      bigqueryEndpoint: undefined,
      storageReadEndpoint: undefined,
      queryTimeoutMs: 90_000,
      readRoute: "table",
    });
    expect(c.output).toEqual({ kind: "gcs", uri: "gs://bqx-ml-output/training", bucket: "bqx-ml-output", prefix: "training" });
    // Waiting on BigQuery is not CPU work: more tables in flight than threads.
    expect(c.extractConcurrency).toBe(32);
    expect(c.maxWorkers).toBe(4);
  });

  it("keeps one table per thread on the local backend unless EXTRACT_CONCURRENCY says otherwise", () => {
    expect(parseConfig({ TARGET_PAIR: "eurusd" }, host).extractConcurrency).toBe(4);
    expect(parseConfig({ TARGET_PAIR: "eurusd", EXTRACT_CONCURRENCY: "64" }, host).extractConcurrency).toBe(64);
  });

  it("takes stand-in endpoints as bare origins", () => {
    const c = parseConfig(
      {
        TARGET_PAIR: "eurusd",
        BACKEND: "gcp",
        GCP_PROJECT: "bqx-ml",
        BIGQUERY_ENDPOINT: "http://127.0.0.1:9050/",
        BIGQUERY_STORAGE_ENDPOINT: "http://127.0.0.1:9051",
        GCS_ENDPOINT: "http://localhost:9052",
        OUTPUT_URI: "gs://out",
      },
      host,
    );
    expect(c.gcp?.bigqueryEndpoint).toBe("http://127.0.0.1:9050");
    expect(c.gcp?.storageReadEndpoint).toBe("http://127.0.0.1:9051");
    expect(c.gcsEndpoint).toBe("http://localhost:9052");
  });

  it("names every missing or malformed gcp setting at once", () => {
    expect(
      problemsFor({
        TARGET_PAIR: "eurusd",
        BACKEND: "gcp",
        BQ_LOCATION: "us central",
        QUERY_TIMEOUT: "forever",
        OUTPUT_URI: "gs://Bad_Bucket!",
        GCS_ENDPOINT: "ftp://x",
      }),
    ).toEqual([
      'GCS_ENDPOINT: expected an http(s) URL with a host and port only, e.g. http://127.0.0.1:9050 (for a local stand-in; leave unset for Google) (got "ftp://x")',
      'OUTPUT_URI: expected gs://<bucket>/<optional prefix> with a valid bucket name (got "gs://Bad_Bucket!")',
      'BQ_LOCATION: expected a BigQuery location like US or us-central1 (got "us central")',
      'QUERY_TIMEOUT: expected a duration from 1s to 6h like 10m, 90s or 1h (got "forever")',
      "GCP_PROJECT: expected the Google Cloud project that runs the BigQuery jobs, e.g. bqx-ml (required with BACKEND=gcp) (got nothing)",
    ]);
  });

  it("refuses the retired CHECKPOINT_URI and KEEP_CHECKPOINTS, saying where parts are staged now", () => {
    expect(problemsFor({ TARGET_PAIR: "eurusd", CHECKPOINT_URI: "gs://bqx-ml-staging/checkpoints", KEEP_CHECKPOINTS: "true" })).toEqual([
      'CHECKPOINT_URI: expected nothing: parts are staged in OUTPUT_URI\'s own bucket, under <OUTPUT_URI>/_staging/<pair>/, because Cloud Storage composes objects of one bucket only; unset CHECKPOINT_URI (got "gs://bqx-ml-staging/checkpoints")',
      'KEEP_CHECKPOINTS: expected nothing: no checkpoints are written any more; the staged parts are removed once the file is published; unset KEEP_CHECKPOINTS (got "true")',
    ]);
  });

  it("refuses a plain http:// endpoint on any host but this machine, naming each variable and the fix", () => {
    const https =
      "https:// for a remote endpoint, or http:// only on a loopback address (127.0.0.1, ::1, localhost) for a local stand-in; leave unset for Google";
    expect(
      problemsFor({
        TARGET_PAIR: "eurusd",
        BACKEND: "gcp",
        GCP_PROJECT: "bqx-ml",
        OUTPUT_URI: "gs://out",
        GCS_ENDPOINT: "http://storage.example.com",
        BIGQUERY_ENDPOINT: "http://10.0.0.5:9050",
        BIGQUERY_STORAGE_ENDPOINT: "http://[2001:db8::1]:9051",
      }),
    ).toEqual([
      `GCS_ENDPOINT: expected ${https} (got "http://storage.example.com")`,
      `BIGQUERY_ENDPOINT: expected ${https} (got "http://10.0.0.5:9050")`,
      `BIGQUERY_STORAGE_ENDPOINT: expected ${https} (got "http://[2001:db8::1]:9051")`,
    ]);
  });

  it("takes https:// endpoints anywhere and http:// on 127.0.0.0/8, ::1 and localhost", () => {
    const gcp = { TARGET_PAIR: "eurusd", BACKEND: "gcp", GCP_PROJECT: "bqx-ml", OUTPUT_URI: "gs://out" };
    const c = parseConfig(
      {
        ...gcp,
        BIGQUERY_ENDPOINT: "https://bigquery.example.com",
        BIGQUERY_STORAGE_ENDPOINT: "https://10.0.0.5:443",
        GCS_ENDPOINT: "https://storage.example.com:8443",
      },
      host,
    );
    expect([c.gcp?.bigqueryEndpoint, c.gcp?.storageReadEndpoint, c.gcsEndpoint]).toEqual([
      "https://bigquery.example.com",
      "https://10.0.0.5",
      "https://storage.example.com:8443",
    ]);
    const loopback = parseConfig(
      { ...gcp, BIGQUERY_ENDPOINT: "http://127.0.0.2:9050", BIGQUERY_STORAGE_ENDPOINT: "http://[::1]:9051", GCS_ENDPOINT: "http://LOCALHOST:9052" },
      host,
    );
    expect([loopback.gcp?.bigqueryEndpoint, loopback.gcp?.storageReadEndpoint, loopback.gcsEndpoint]).toEqual([
      "http://127.0.0.2:9050",
      "http://[::1]:9051",
      "http://localhost:9052",
    ]);
    // Names that only look local are not: a DNS answer decides where they go.
    expect(problemsFor({ ...gcp, GCS_ENDPOINT: "http://localhost.example.com:9052", BIGQUERY_ENDPOINT: "http://127.0.0.1.nip.io:9050" })).toHaveLength(2);
  });

  it("reads tables through read sessions on them unless BQ_READ_ROUTE=query, and refuses any other value or BACKEND=local", () => {
    const gcp = { TARGET_PAIR: "eurusd", BACKEND: "gcp", GCP_PROJECT: "bqx-ml", OUTPUT_URI: "gs://out" };
    expect(parseConfig(gcp, host).gcp?.readRoute).toBe("table");
    expect(parseConfig({ ...gcp, BQ_READ_ROUTE: "query" }, host).gcp?.readRoute).toBe("query");
    expect(problemsFor({ ...gcp, BQ_READ_ROUTE: "jobs" })).toEqual([
      'BQ_READ_ROUTE: expected "table" (Storage Read sessions on the tables themselves, no query jobs) or "query" (a query job per read) (got "jobs")',
    ]);
    expect(problemsFor({ TARGET_PAIR: "eurusd", BQ_READ_ROUTE: "query" })).toEqual(['BQ_READ_ROUTE: expected only with BACKEND=gcp (got "query")']);
  });

  it("refuses BigQuery endpoints on the local backend, where they would be ignored", () => {
    expect(problemsFor({ TARGET_PAIR: "eurusd", BIGQUERY_ENDPOINT: "http://127.0.0.1:1" })).toEqual([
      "BIGQUERY_ENDPOINT/BIGQUERY_STORAGE_ENDPOINT: expected only with BACKEND=gcp (got BACKEND=local)",
    ]);
  });
});
