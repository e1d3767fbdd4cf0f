// The only reader of process.env. Every variable is declared once in src/config/variables.ts
// (name, default, what is accepted, parser) and the pairs this task builds are selected in
// src/config/pairs.ts; this file ties the variables together, collects every problem into one
// error (one line per problem: what was expected and what was given), and returns a frozen,
// typed Config, a union on the backend. TARGET_PAIR is validated here, long before it reaches SQL.
import os from "node:os";
import { defaultExtractConcurrency } from "./concurrency.ts";
import { ConfigError } from "./errors.ts";
import { selectTaskPairs } from "./config/pairs.ts";
import { readAll, rawValue, shownValue, type Env, type Location, type LogLevel, type ParseContext, type Values } from "./config/variables.ts";
import type { SchemaChangePolicy } from "./schema-change.ts";
import { defaultMemoryBudget } from "./memory-plan.ts";
import { detectCpus, detectMemoryLimit, type Detected } from "./resources.ts";
import { formatBytes } from "./units.ts";

export { DEFAULTS, LOG_LEVELS, type Location, type LogLevel } from "./config/variables.ts";
export type Backend = "local" | "gcp";
export type LogFormat = "json" | "pretty";

export interface GcpConfig {
  project: string;
  /** BigQuery location of the datasets (e.g. US, us-central1); undefined lets BigQuery infer it. */
  location: string | undefined;
  /** Overrides for local protocol stand-ins; undefined means Google's production endpoints. */
  bigqueryEndpoint: string | undefined;
  storageReadEndpoint: string | undefined;
  queryTimeoutMs: number;
  /** BQ_READ_ROUTE: "table" (Storage Read sessions on the tables; ROW_LIMIT still queries) or "query" (a query job per read). */
  readRoute: "table" | "query";
}

/** Settings every backend shares. */
export interface CommonConfig {
  pair: string;
  /** The pairs this process builds, in order: [TARGET_PAIR], or its share of PAIRS. `pair` is the first. */
  pairs: readonly string[];
  pairSource: "TARGET_PAIR" | "PAIRS";
  /** How many pairs PAIRS listed for the whole execution (1 with TARGET_PAIR). */
  pairsListed: number;
  /** PLAN_ONLY: plan every selected pair (discovery, permissions, memory, disk, bytes and cost) and read no table. */
  planOnly: boolean;
  /** OUTPUT_URI as given (resolved for local paths). */
  outputUri: string;
  output: Location;
  /** Cloud Storage JSON API endpoint override (stand-ins), for OUTPUT_URI. */
  gcsEndpoint: string | undefined;
  /** Tables being extracted at once (queries in flight), separate from the CPU pool size. */
  extractConcurrency: number;
  workDir: string;
  featuresDataset: string;
  targetsDataset: string;
  dateFrom: string;
  dateTo: string;
  /** Rows per table, ordered by time; undefined means no limit. */
  rowLimit: number | undefined;
  /** ROW_GROUP_ROWS: rows per row group of the training file; undefined lets the job choose. */
  rowGroupRows: number | undefined;
  maxWorkers: number;
  maxWorkersSource: string;
  memoryBudgetBytes: number;
  memoryBudgetSource: string;
  memoryLimitBytes: number;
  memoryLimitSource: string;
  minRows: number;
  minColumns: number;
  /** SCHEMA_CHANGE: what a file whose columns or tables differ from the published one's does (allow, warn: publish; fail: keep the old file, exit 1). */
  schemaChange: SchemaChangePolicy;
  /** FAULT_RATE/FAULT_SEED: transient faults injected into warehouse and local bucket calls (BACKEND=local, testing only). */
  faults: { rate: number; seed: number } | undefined;
  /** FAULT_CORRUPT_UPLOADS: the local bucket flips a byte in every copy it makes (testing only). */
  corruptUploads: boolean;
  logLevel: LogLevel;
  logFormat: LogFormat;
  cloudRun: { job?: string | undefined; execution?: string | undefined; taskIndex: number; taskCount: number; attempt: number };
}

/** BACKEND=local: the embedded DuckDB warehouse file. */
export interface LocalBackendConfig extends CommonConfig {
  backend: "local";
  warehouse: string;
  gcp?: undefined;
}

/** BACKEND=gcp: BigQuery. */
export interface GcpBackendConfig extends CommonConfig {
  backend: "gcp";
  gcp: GcpConfig;
  warehouse?: undefined;
}

export type Config = LocalBackendConfig | GcpBackendConfig;

export interface HostFacts {
  cpus: Detected;
  memoryLimit: Detected;
  stdoutIsTty: boolean;
  cwd: string;
  tmpDir: string;
}

export function realHostFacts(): HostFacts {
  return {
    cpus: detectCpus(),
    memoryLimit: detectMemoryLimit(),
    stdoutIsTty: Boolean(process.stdout.isTTY),
    cwd: process.cwd(),
    tmpDir: os.tmpdir(),
  };
}

/** Variables an earlier version read, and why they are gone. */
const RETIRED: ReadonlyArray<readonly [string, string]> = [
  [
    "CHECKPOINT_URI",
    "parts are staged in OUTPUT_URI's own bucket, under <OUTPUT_URI>/_staging/<pair>/, because Cloud Storage composes objects of one bucket only",
  ],
  ["KEEP_CHECKPOINTS", "no checkpoints are written any more; the staged parts are removed once the file is published"],
];

/** Parse the environment. Throws ConfigError listing every problem at once. */
export function parseConfig(env: Env, host: HostFacts): Readonly<Config> {
  const problems: string[] = [];
  const ctx: ParseContext = { cwd: host.cwd, tmpDir: host.tmpDir };
  const v = readAll(env, ctx, problems);
  // TARGET_PAIR (one pair), or PAIRS split across the execution's tasks: required, never defaulted.
  // Reported first: the pair is what a person sets on every execution.
  const selection = selectTaskPairs({
    TARGET_PAIR: env.TARGET_PAIR,
    PAIRS: env.PAIRS,
    taskIndex: v.CLOUD_RUN_TASK_INDEX ?? 0,
    taskCount: v.CLOUD_RUN_TASK_COUNT ?? 1,
  });
  problems.unshift(...selection.problems);
  problems.push(...crossProblems(env, v));
  if (problems.length > 0) throw new ConfigError(problems);

  const backend = v.BACKEND ?? "local";
  const common = commonConfig(v, host, selection);
  if (backend === "gcp") {
    const gcp: GcpConfig = {
      project: v.GCP_PROJECT!,
      location: v.BQ_LOCATION,
      bigqueryEndpoint: v.BIGQUERY_ENDPOINT,
      storageReadEndpoint: v.BIGQUERY_STORAGE_ENDPOINT,
      queryTimeoutMs: v.QUERY_TIMEOUT!,
      readRoute: v.BQ_READ_ROUTE ?? "table",
    };
    return Object.freeze({ ...common, backend, gcp: Object.freeze(gcp) });
  }
  return Object.freeze({ ...common, backend, warehouse: v.WAREHOUSE! });
}

/** The rules that tie variables together, each a problem line like a single variable's. */
function crossProblems(env: Env, v: Values): string[] {
  const problems: string[] = [];
  const problem = (name: string, expected: string) => problems.push(`${name}: expected ${expected} (got ${shownValue(rawValue(env, name))})`);
  // A plan covers every pair listed, in one task: several tasks would each print the same plan.
  if (v.PLAN_ONLY && (v.CLOUD_RUN_TASK_COUNT ?? 1) > 1)
    problem("CLOUD_RUN_TASK_COUNT", "1 with PLAN_ONLY=true: one task plans every pair listed (execute with --tasks 1)");
  // Retired with the raw checkpoints: refused rather than ignored, so nobody believes they still work.
  for (const [name, why] of RETIRED) if (rawValue(env, name) !== undefined) problem(name, `nothing: ${why}; unset ${name}`);
  const gcp = v.BACKEND === "gcp";
  if (rawValue(env, "BQ_READ_ROUTE") !== undefined && v.BQ_READ_ROUTE !== undefined && !gcp) problem("BQ_READ_ROUTE", "only with BACKEND=gcp");
  if (gcp && rawValue(env, "GCP_PROJECT") === undefined)
    problem("GCP_PROJECT", "the Google Cloud project that runs the BigQuery jobs, e.g. bqx-ml (required with BACKEND=gcp)");
  if (!gcp && (v.BIGQUERY_ENDPOINT !== undefined || v.BIGQUERY_STORAGE_ENDPOINT !== undefined)) {
    problems.push("BIGQUERY_ENDPOINT/BIGQUERY_STORAGE_ENDPOINT: expected only with BACKEND=gcp (got BACKEND=local)");
  }
  if (v.DATE_FROM !== undefined && v.DATE_TO !== undefined && v.DATE_FROM > v.DATE_TO) {
    problems.push(`DATE_FROM/DATE_TO: expected DATE_FROM on or before DATE_TO (got ${v.DATE_FROM} > ${v.DATE_TO})`);
  }
  // Chaos testing of the retry paths: never on unless asked for, and only where no real service is hit.
  if (v.FAULT_RATE !== undefined && gcp) problem("FAULT_RATE", "only with BACKEND=local (the gcp stand-ins inject their own faults)");
  if (rawValue(env, "FAULT_RATE") === undefined && rawValue(env, "FAULT_SEED") !== undefined) problem("FAULT_SEED", "only together with FAULT_RATE");
  if (v.FAULT_CORRUPT_UPLOADS && v.OUTPUT_URI !== undefined && v.OUTPUT_URI.kind !== "local") {
    problem("FAULT_CORRUPT_UPLOADS", "only with a local directory as OUTPUT_URI (the Cloud Storage stand-in corrupts uploads itself)");
  }
  return problems;
}

function commonConfig(v: Values, host: HostFacts, selection: ReturnType<typeof selectTaskPairs>): CommonConfig {
  const maxWorkers = v.MAX_WORKERS ?? host.cpus.value;
  const format = v.LOG_FORMAT ?? "auto";
  return {
    pair: selection.pairs[0]!,
    pairs: Object.freeze(selection.pairs),
    pairSource: selection.source,
    pairsListed: selection.listed,
    planOnly: v.PLAN_ONLY ?? false,
    outputUri: v.OUTPUT_URI!.uri,
    output: Object.freeze(v.OUTPUT_URI!),
    gcsEndpoint: v.GCS_ENDPOINT,
    extractConcurrency: v.EXTRACT_CONCURRENCY ?? defaultExtractConcurrency(v.BACKEND ?? "local", maxWorkers),
    workDir: v.WORK_DIR!,
    featuresDataset: v.FEATURES_DATASET!,
    targetsDataset: v.TARGETS_DATASET!,
    dateFrom: v.DATE_FROM!,
    dateTo: v.DATE_TO!,
    rowLimit: v.ROW_LIMIT,
    rowGroupRows: v.ROW_GROUP_ROWS,
    maxWorkers,
    maxWorkersSource: v.MAX_WORKERS !== undefined ? "MAX_WORKERS" : host.cpus.source,
    memoryBudgetBytes: v.MEMORY_BUDGET ?? defaultMemoryBudget(host.memoryLimit.value),
    memoryBudgetSource: v.MEMORY_BUDGET !== undefined ? "MEMORY_BUDGET" : `a quarter of ${formatBytes(host.memoryLimit.value)} from ${host.memoryLimit.source}`,
    memoryLimitBytes: host.memoryLimit.value,
    memoryLimitSource: host.memoryLimit.source,
    minRows: v.MIN_ROWS!,
    minColumns: v.MIN_COLUMNS!,
    schemaChange: v.SCHEMA_CHANGE!,
    faults: v.FAULT_RATE !== undefined ? Object.freeze({ rate: v.FAULT_RATE, seed: v.FAULT_SEED ?? 1 }) : undefined,
    corruptUploads: v.FAULT_CORRUPT_UPLOADS ?? false,
    logLevel: v.LOG_LEVEL!,
    logFormat: format === "json" || format === "pretty" ? format : host.stdoutIsTty ? "pretty" : "json",
    cloudRun: Object.freeze({
      job: v.CLOUD_RUN_JOB,
      execution: v.CLOUD_RUN_EXECUTION,
      taskIndex: v.CLOUD_RUN_TASK_INDEX ?? 0,
      taskCount: v.CLOUD_RUN_TASK_COUNT ?? 1,
      attempt: v.CLOUD_RUN_TASK_ATTEMPT ?? 0,
    }),
  };
}

/** The configuration as it is safe to print and to record in the manifest. */
export function effectiveConfig(config: Config): Record<string, unknown> {
  return {
    TARGET_PAIR: config.pair,
    ...(config.planOnly ? { PLAN_ONLY: true } : {}),
    BACKEND: config.backend,
    ...(config.backend === "local" ? { WAREHOUSE: config.warehouse } : {}),
    ...(config.gcp
      ? {
          GCP_PROJECT: config.gcp.project,
          BQ_LOCATION: config.gcp.location ?? null,
          QUERY_TIMEOUT_MS: config.gcp.queryTimeoutMs,
          BIGQUERY_ENDPOINT: config.gcp.bigqueryEndpoint ?? null,
          BIGQUERY_STORAGE_ENDPOINT: config.gcp.storageReadEndpoint ?? null,
          BQ_READ_ROUTE: config.gcp.readRoute,
        }
      : {}),
    OUTPUT_URI: config.outputUri,
    GCS_ENDPOINT: config.gcsEndpoint ?? null,
    EXTRACT_CONCURRENCY: config.extractConcurrency,
    WORK_DIR: config.workDir,
    FEATURES_DATASET: config.featuresDataset,
    TARGETS_DATASET: config.targetsDataset,
    DATE_FROM: config.dateFrom,
    DATE_TO: config.dateTo,
    ROW_LIMIT: config.rowLimit ?? null,
    ROW_GROUP_ROWS: config.rowGroupRows ?? null,
    MAX_WORKERS: config.maxWorkers,
    MEMORY_BUDGET: config.memoryBudgetBytes,
    MIN_ROWS: config.minRows,
    MIN_COLUMNS: config.minColumns,
    SCHEMA_CHANGE: config.schemaChange,
    ...(config.faults ? { FAULT_RATE: config.faults.rate, FAULT_SEED: config.faults.seed } : {}),
    ...(config.corruptUploads ? { FAULT_CORRUPT_UPLOADS: true } : {}),
    LOG_LEVEL: config.logLevel,
  };
}
