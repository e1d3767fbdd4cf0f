// The only reader of process.env. Parses every variable once, collects every problem into one
// error (one line per variable: what was expected and what was given), and returns a frozen,
// typed Config. TARGET_PAIR is validated here, long before it can reach any SQL.
import os from "node:os";
import path from "node:path";
import { DEFAULT_FEATURES_DATASET, DEFAULT_TARGETS_DATASET } from "./constants.ts";
import { ConfigError } from "./errors.ts";
import { selectTaskPairs } from "./fanout.ts";
import { isLoopbackHost } from "./loopback.ts";
import { SCHEMA_CHANGE_POLICIES, type SchemaChangePolicy } from "./schema-change.ts";
import { defaultMemoryBudget, detectCpus, detectMemoryLimit, type Detected } from "./resources.ts";
import { formatBytes, parseDuration, parseSize } from "./units.ts";

export type Backend = "local" | "gcp";
export type LogFormat = "json" | "pretty";
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Where objects go: a local directory or a Cloud Storage bucket and prefix. */
export type Location =
  | { kind: "local"; uri: string; dir: string }
  | { kind: "gcs"; uri: string; bucket: string; prefix: string };

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

export interface Config {
  pair: string;
  // --- fan-out (src/fanout.ts) ---
  /** The pairs this process builds, in order: [TARGET_PAIR], or its share of PAIRS. `pair` is the first. */
  pairs: readonly string[];
  pairSource: "TARGET_PAIR" | "PAIRS";
  /** How many pairs PAIRS listed for the whole execution (1 with TARGET_PAIR). */
  pairsListed: number;
  // --- end fan-out ---
  /** PLAN_ONLY: plan every selected pair (discovery, permissions, memory, disk, bytes and cost) and read no table. */
  planOnly: boolean;
  backend: Backend;
  /** DuckDB database file (BACKEND=local). */
  warehouse: string;
  gcp: GcpConfig | undefined;
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
  cloudRun: { job?: string; execution?: string; taskIndex: number; taskCount: number; attempt: number };
}

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

export const DEFAULTS = Object.freeze({
  WAREHOUSE: "data/warehouse.duckdb",
  OUTPUT_URI: "data/bucket",
  DATE_FROM: "2020-01-01",
  DATE_TO: "2024-12-31",
  MIN_ROWS: 100_000,
  MIN_COLUMNS: 10_000,
  SCHEMA_CHANGE: "warn",
});

const PROJECT_ID = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;
const BQ_LOCATION = /^[A-Za-z][A-Za-z0-9-]{1,40}$/;
const GCS_URI = /^gs:\/\/([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:\/(.*))?$/;
/** Tables in flight for BACKEND=gcp: enough that a few seconds per query still gives hundreds of tables a minute. */
const DEFAULT_GCP_EXTRACT_CONCURRENCY = 32;
const DEFAULT_QUERY_TIMEOUT = "10m";
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,1023}$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;

type Env = Readonly<Record<string, string | undefined>>;

/** Variables an earlier version read, and why they are gone. */
const RETIRED: ReadonlyArray<readonly [string, string]> = [
  ["CHECKPOINT_URI", "parts are staged in OUTPUT_URI's own bucket, under <OUTPUT_URI>/_staging/<pair>/, because Cloud Storage composes objects of one bucket only"],
  ["KEEP_CHECKPOINTS", "no checkpoints are written any more; the staged parts are removed once the file is published"],
];

/** Parse the environment. Throws ConfigError listing every problem at once. */
export function parseConfig(env: Env, host: HostFacts): Readonly<Config> {
  const problems: string[] = [];
  // What was given is echoed back, except a URL's user:password@ (a credential in the wrong place).
  const shown = (got: string) => JSON.stringify(got.replace(/\/\/[^/@\s]*@/g, "//[redacted]@"));
  const problem = (name: string, expected: string, got: string | undefined) =>
    problems.push(`${name}: expected ${expected} (got ${got === undefined ? "nothing" : shown(got)})`);
  const raw = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };

  // --- fan-out (src/fanout.ts) ---
  // TARGET_PAIR (one pair), or PAIRS split across the execution's tasks: required, never
  // defaulted (a default once made a job silently build the wrong pair).
  const selection = selectTaskPairs(env);
  problems.push(...selection.problems);
  const pair = selection.pairs[0] ?? "";
  // --- end fan-out ---

  // A plan covers every pair listed, in one task: several tasks would each print the same plan.
  const planRaw = raw("PLAN_ONLY");
  if (planRaw !== undefined && !["true", "false"].includes(planRaw.toLowerCase())) problem("PLAN_ONLY", "true or false (true: print the plan of each pair and exit, reading no table)", planRaw);
  const planOnly = planRaw?.toLowerCase() === "true";
  if (planOnly && /^\d+$/.test(raw("CLOUD_RUN_TASK_COUNT") ?? "1") && Number(raw("CLOUD_RUN_TASK_COUNT") ?? "1") > 1) {
    problem("CLOUD_RUN_TASK_COUNT", "1 with PLAN_ONLY=true: one task plans every pair listed (execute with --tasks 1)", raw("CLOUD_RUN_TASK_COUNT"));
  }

  const backendRaw = raw("BACKEND") ?? "local";
  if (backendRaw !== "local" && backendRaw !== "gcp") {
    problem("BACKEND", `"local" (the embedded DuckDB warehouse) or "gcp" (BigQuery)`, backendRaw);
  }
  const backend: Backend = backendRaw === "gcp" ? "gcp" : "local";

  const warehouse = path.resolve(host.cwd, raw("WAREHOUSE") ?? DEFAULTS.WAREHOUSE);

  const endpoint = (name: string): string | undefined => {
    const v = raw(name);
    if (v === undefined) return undefined;
    let url: URL | undefined;
    try {
      url = new URL(v);
    } catch {
      url = undefined;
    }
    if (!url || !["http:", "https:"].includes(url.protocol) || url.pathname.replace(/\/+$/, "") !== "" || url.search !== "") {
      problem(name, "an http(s) URL with a host and port only, e.g. http://127.0.0.1:9050 (for a local stand-in; leave unset for Google)", v);
      return undefined;
    }
    // Plain http sends the bearer token and the tables' rows in clear text: only to this machine.
    if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
      problem(name, "https:// for a remote endpoint, or http:// only on a loopback address (127.0.0.1, ::1, localhost) for a local stand-in; leave unset for Google", v);
      return undefined;
    }
    return url.origin;
  };
  const gcsEndpoint = endpoint("GCS_ENDPOINT");
  const bigqueryEndpoint = endpoint("BIGQUERY_ENDPOINT");
  const storageReadEndpoint = endpoint("BIGQUERY_STORAGE_ENDPOINT");

  /** A local directory or gs://bucket/prefix; anything else is a problem named after the variable. */
  const location = (name: string, v: string): Location | undefined => {
    if (v.startsWith("gs://")) {
      const m = GCS_URI.exec(v);
      if (!m) {
        problem(name, "gs://<bucket>/<optional prefix> with a valid bucket name", v);
        return undefined;
      }
      const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
      return { kind: "gcs", uri: `gs://${m[1]}${prefix ? `/${prefix}` : ""}`, bucket: m[1]!, prefix };
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v) && !v.startsWith("file://")) {
      problem(name, "a local directory or gs://<bucket>/<prefix>", v);
      return undefined;
    }
    const dir = path.resolve(host.cwd, v.replace(/^file:\/\//, ""));
    return { kind: "local", uri: dir, dir };
  };
  const output = location("OUTPUT_URI", raw("OUTPUT_URI") ?? DEFAULTS.OUTPUT_URI);
  // Retired with the raw checkpoints: the aligned parts are the checkpoints now, and compose needs
  // them in the output's own bucket. Refused rather than ignored, so nobody believes it still works.
  for (const [name, why] of RETIRED) if (raw(name) !== undefined) problem(name, `nothing: ${why}; unset ${name}`, raw(name));

  let gcp: GcpConfig | undefined;
  const projectRaw = raw("GCP_PROJECT");
  if (projectRaw !== undefined && !PROJECT_ID.test(projectRaw)) problem("GCP_PROJECT", "a project ID like bqx-ml (6-30 lower-case letters, digits, hyphens)", projectRaw);
  const locationRaw = raw("BQ_LOCATION");
  if (locationRaw !== undefined && !BQ_LOCATION.test(locationRaw)) problem("BQ_LOCATION", "a BigQuery location like US or us-central1", locationRaw);
  const timeoutRaw = raw("QUERY_TIMEOUT") ?? DEFAULT_QUERY_TIMEOUT;
  const queryTimeoutMs = parseDuration(timeoutRaw);
  if (queryTimeoutMs === undefined || queryTimeoutMs < 1000 || queryTimeoutMs > 6 * 3_600_000) {
    problem("QUERY_TIMEOUT", "a duration from 1s to 6h like 10m, 90s or 1h", timeoutRaw);
  }
  const readRouteRaw = raw("BQ_READ_ROUTE");
  if (readRouteRaw !== undefined && readRouteRaw !== "table" && readRouteRaw !== "query") {
    problem("BQ_READ_ROUTE", `"table" (Storage Read sessions on the tables themselves, no query jobs) or "query" (a query job per read)`, readRouteRaw);
  } else if (readRouteRaw !== undefined && backend !== "gcp") problem("BQ_READ_ROUTE", "only with BACKEND=gcp", readRouteRaw);
  const readRoute = readRouteRaw === "query" ? "query" : "table";
  if (backend === "gcp") {
    if (projectRaw === undefined) problem("GCP_PROJECT", "the Google Cloud project that runs the BigQuery jobs, e.g. bqx-ml (required with BACKEND=gcp)", projectRaw);
    else if (PROJECT_ID.test(projectRaw)) {
      gcp = { project: projectRaw, location: locationRaw, bigqueryEndpoint, storageReadEndpoint, queryTimeoutMs: queryTimeoutMs ?? 0, readRoute };
    }
  } else if (bigqueryEndpoint !== undefined || storageReadEndpoint !== undefined) {
    problems.push("BIGQUERY_ENDPOINT/BIGQUERY_STORAGE_ENDPOINT: expected only with BACKEND=gcp (got BACKEND=local)");
  }
  const outputUri = output?.uri ?? "";
  const workDir = path.resolve(host.cwd, raw("WORK_DIR") ?? path.join(host.tmpDir, "bqx-training"));

  const dataset = (name: string, fallback: string): string => {
    const v = raw(name) ?? fallback;
    if (!IDENTIFIER.test(v)) problem(name, "a dataset name of letters, digits and underscores", v);
    return v;
  };
  const featuresDataset = dataset("FEATURES_DATASET", DEFAULT_FEATURES_DATASET);
  const targetsDataset = dataset("TARGETS_DATASET", DEFAULT_TARGETS_DATASET);

  const date = (name: string, fallback: string): string => {
    const v = raw(name) ?? fallback;
    const parsed = ISO_DATE.test(v) ? new Date(`${v}T00:00:00Z`) : undefined;
    if (!parsed || Number.isNaN(parsed.getTime()) || parsed.toISOString().slice(0, 10) !== v) {
      problem(name, "a date like 2020-01-01", v);
    }
    return v;
  };
  const dateFrom = date("DATE_FROM", DEFAULTS.DATE_FROM);
  const dateTo = date("DATE_TO", DEFAULTS.DATE_TO);
  if (ISO_DATE.test(dateFrom) && ISO_DATE.test(dateTo) && dateFrom > dateTo) {
    problems.push(`DATE_FROM/DATE_TO: expected DATE_FROM on or before DATE_TO (got ${dateFrom} > ${dateTo})`);
  }

  const positiveInt = (name: string, max = Number.MAX_SAFE_INTEGER): number | undefined => {
    const v = raw(name);
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v) || Number(v) < 1 || Number(v) > max) {
      problem(name, `a whole number from 1 to ${max.toLocaleString("en-US")}`, v);
      return undefined;
    }
    return Number(v);
  };
  const rowLimit = positiveInt("ROW_LIMIT");
  const rowGroupRows = positiveInt("ROW_GROUP_ROWS");
  const maxWorkersSet = positiveInt("MAX_WORKERS", 256);
  const extractConcurrencySet = positiveInt("EXTRACT_CONCURRENCY", 1000);
  const minRows = positiveInt("MIN_ROWS") ?? DEFAULTS.MIN_ROWS;
  const minColumns = positiveInt("MIN_COLUMNS") ?? DEFAULTS.MIN_COLUMNS;

  const schemaChangeRaw = (raw("SCHEMA_CHANGE") ?? DEFAULTS.SCHEMA_CHANGE).toLowerCase();
  if (!(SCHEMA_CHANGE_POLICIES as readonly string[]).includes(schemaChangeRaw)) {
    problem("SCHEMA_CHANGE", "allow, warn or fail (what to do when the columns or tables differ from the published file's)", raw("SCHEMA_CHANGE"));
  }
  const schemaChange = (SCHEMA_CHANGE_POLICIES as readonly string[]).includes(schemaChangeRaw) ? (schemaChangeRaw as SchemaChangePolicy) : "warn";

  let memoryBudgetBytes = defaultMemoryBudget(host.memoryLimit.value);
  let memoryBudgetSource = `a quarter of ${formatBytes(host.memoryLimit.value)} from ${host.memoryLimit.source}`;
  const budgetRaw = raw("MEMORY_BUDGET");
  if (budgetRaw !== undefined) {
    const bytes = parseSize(budgetRaw);
    if (bytes === undefined || bytes < 64 * 1024 ** 2) {
      problem("MEMORY_BUDGET", "a size of at least 64MiB like 3GiB, 512MiB or 2GB", budgetRaw);
    } else {
      memoryBudgetBytes = bytes;
      memoryBudgetSource = "MEMORY_BUDGET";
    }
  }

  // Chaos testing of the retry paths: never on unless asked for, and only where no real service is hit.
  const faultRateRaw = raw("FAULT_RATE");
  const faultSeedRaw = raw("FAULT_SEED");
  let faults: { rate: number; seed: number } | undefined;
  if (faultRateRaw !== undefined) {
    const rate = /^(0(\.\d+)?|0?\.\d+)$/.test(faultRateRaw) ? Number(faultRateRaw) : NaN;
    if (!(rate > 0 && rate <= 0.5)) problem("FAULT_RATE", "a fraction above 0 and at most 0.5, like 0.2 (testing only; leave unset in production)", faultRateRaw);
    else if (backend !== "local") problem("FAULT_RATE", "only with BACKEND=local (the gcp stand-ins inject their own faults)", faultRateRaw);
    const seed = faultSeedRaw === undefined ? 1 : /^\d{1,9}$/.test(faultSeedRaw) ? Number(faultSeedRaw) : undefined;
    if (seed === undefined) problem("FAULT_SEED", "a whole number (which calls fail, reproducibly)", faultSeedRaw);
    if (rate > 0 && rate <= 0.5 && backend === "local" && seed !== undefined) faults = { rate, seed };
  } else if (faultSeedRaw !== undefined) {
    problem("FAULT_SEED", "only together with FAULT_RATE", faultSeedRaw);
  }

  const corruptRaw = raw("FAULT_CORRUPT_UPLOADS");
  let corruptUploads = false;
  if (corruptRaw !== undefined) {
    if (!["true", "false"].includes(corruptRaw.toLowerCase())) problem("FAULT_CORRUPT_UPLOADS", "true or false (testing only; leave unset in production)", corruptRaw);
    else if (corruptRaw.toLowerCase() === "true" && output?.kind !== "local") problem("FAULT_CORRUPT_UPLOADS", "only with a local directory as OUTPUT_URI (the Cloud Storage stand-in corrupts uploads itself)", corruptRaw);
    else corruptUploads = corruptRaw.toLowerCase() === "true";
  }

  const levelRaw = (raw("LOG_LEVEL") ?? "info").toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(levelRaw)) problem("LOG_LEVEL", LOG_LEVELS.join(", "), raw("LOG_LEVEL"));
  const formatRaw = (raw("LOG_FORMAT") ?? "auto").toLowerCase();
  if (!["auto", "json", "pretty"].includes(formatRaw)) problem("LOG_FORMAT", "auto, json or pretty", raw("LOG_FORMAT"));
  const logFormat: LogFormat = formatRaw === "json" || formatRaw === "pretty" ? formatRaw : host.stdoutIsTty ? "pretty" : "json";

  const platformInt = (name: string, fallback: number): number => {
    const v = raw(name);
    if (v === undefined) return fallback;
    if (!/^\d+$/.test(v)) {
      problem(name, "a whole number (set by Cloud Run)", v);
      return fallback;
    }
    return Number(v);
  };

  // Read before the check below, so a malformed platform value is reported like any other.
  const cloudRun = Object.freeze({
    job: raw("CLOUD_RUN_JOB"),
    execution: raw("CLOUD_RUN_EXECUTION"),
    taskIndex: platformInt("CLOUD_RUN_TASK_INDEX", 0),
    taskCount: platformInt("CLOUD_RUN_TASK_COUNT", 1),
    attempt: platformInt("CLOUD_RUN_TASK_ATTEMPT", 0),
  });

  if (problems.length > 0) throw new ConfigError(problems);

  const maxWorkers = maxWorkersSet ?? host.cpus.value;
  return Object.freeze({
    pair,
    pairs: Object.freeze(selection.pairs),
    pairSource: selection.source,
    pairsListed: selection.listed,
    planOnly,
    backend,
    warehouse,
    gcp: gcp ? Object.freeze(gcp) : undefined,
    outputUri,
    output: Object.freeze(output!),
    gcsEndpoint,
    // The local backend's work is all CPU: one table per thread. BigQuery's is mostly waiting.
    extractConcurrency: extractConcurrencySet ?? (backend === "gcp" ? Math.max(DEFAULT_GCP_EXTRACT_CONCURRENCY, maxWorkers) : maxWorkers),
    workDir,
    featuresDataset,
    targetsDataset,
    dateFrom,
    dateTo,
    rowLimit,
    rowGroupRows,
    maxWorkers,
    maxWorkersSource: maxWorkersSet !== undefined ? "MAX_WORKERS" : host.cpus.source,
    memoryBudgetBytes,
    memoryBudgetSource,
    memoryLimitBytes: host.memoryLimit.value,
    memoryLimitSource: host.memoryLimit.source,
    minRows,
    minColumns,
    schemaChange,
    faults: faults ? Object.freeze(faults) : undefined,
    corruptUploads,
    logLevel: levelRaw as LogLevel,
    logFormat,
    cloudRun,
  });
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
