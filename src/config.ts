// The only reader of process.env. Parses every variable once, collects every problem into one
// error (one line per variable: what was expected and what was given), and returns a frozen,
// typed Config. TARGET_PAIR is validated here, long before it can reach any SQL.
import os from "node:os";
import path from "node:path";
import { DEFAULT_FEATURES_DATASET, DEFAULT_TARGETS_DATASET, PAIRS } from "./constants.ts";
import { ConfigError } from "./errors.ts";
import { defaultMemoryBudget, detectCpus, detectMemoryLimit, type Detected } from "./resources.ts";
import { formatBytes, parseSize } from "./units.ts";

export type Backend = "local";
export type LogFormat = "json" | "pretty";
export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Config {
  pair: string;
  backend: Backend;
  warehouse: string;
  outputUri: string;
  workDir: string;
  featuresDataset: string;
  targetsDataset: string;
  dateFrom: string;
  dateTo: string;
  /** Rows per table, ordered by time; undefined means no limit. */
  rowLimit: number | undefined;
  maxWorkers: number;
  maxWorkersSource: string;
  memoryBudgetBytes: number;
  memoryBudgetSource: string;
  memoryLimitBytes: number;
  memoryLimitSource: string;
  minRows: number;
  minColumns: number;
  keepCheckpoints: boolean;
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
});

const PAIR_SHAPE = /^[a-z]{6}$/;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,1023}$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;

type Env = Readonly<Record<string, string | undefined>>;

/** Parse the environment. Throws ConfigError listing every problem at once. */
export function parseConfig(env: Env, host: HostFacts): Readonly<Config> {
  const problems: string[] = [];
  const problem = (name: string, expected: string, got: string | undefined) =>
    problems.push(`${name}: expected ${expected} (got ${got === undefined ? "nothing" : JSON.stringify(got)})`);
  const raw = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };

  // TARGET_PAIR: required, never defaulted (a default once made a job silently build the wrong pair).
  const pairRaw = env.TARGET_PAIR;
  let pair = "";
  if (pairRaw === undefined || pairRaw.trim() === "") {
    problem("TARGET_PAIR", `one of the 28 pairs in lower case, e.g. eurusd; set it with --update-env-vars TARGET_PAIR=<pair>`, pairRaw);
  } else if (!PAIR_SHAPE.test(pairRaw)) {
    const hint = /^[A-Za-z]{6}$/.test(pairRaw) ? ` (did you mean ${pairRaw.toLowerCase()}?)` : "";
    problem("TARGET_PAIR", `six lower-case letters naming a pair, e.g. eurusd${hint}`, pairRaw);
  } else if (!PAIRS.includes(pairRaw)) {
    problem("TARGET_PAIR", `one of ${PAIRS.join(" ")}`, pairRaw);
  } else {
    pair = pairRaw;
  }

  const backendRaw = raw("BACKEND") ?? "local";
  if (backendRaw !== "local") {
    problem("BACKEND", `"local" (the embedded DuckDB warehouse and a local bucket directory; "gcp" is not available in this version)`, backendRaw);
  }

  const warehouse = path.resolve(host.cwd, raw("WAREHOUSE") ?? DEFAULTS.WAREHOUSE);

  const outputRaw = raw("OUTPUT_URI") ?? DEFAULTS.OUTPUT_URI;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(outputRaw) && !outputRaw.startsWith("file://")) {
    problem("OUTPUT_URI", `a local directory for BACKEND=local (gs:// arrives with BACKEND=gcp)`, outputRaw);
  }
  const outputUri = path.resolve(host.cwd, outputRaw.replace(/^file:\/\//, ""));
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
  const maxWorkersSet = positiveInt("MAX_WORKERS", 256);
  const minRows = positiveInt("MIN_ROWS") ?? DEFAULTS.MIN_ROWS;
  const minColumns = positiveInt("MIN_COLUMNS") ?? DEFAULTS.MIN_COLUMNS;

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

  const keepRaw = raw("KEEP_CHECKPOINTS");
  let keepCheckpoints = false;
  if (keepRaw !== undefined) {
    const v = keepRaw.toLowerCase();
    if (["true", "1", "yes"].includes(v)) keepCheckpoints = true;
    else if (!["false", "0", "no"].includes(v)) problem("KEEP_CHECKPOINTS", "true or false", keepRaw);
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

  if (problems.length > 0) throw new ConfigError(problems);

  return Object.freeze({
    pair,
    backend: "local" as const,
    warehouse,
    outputUri,
    workDir,
    featuresDataset,
    targetsDataset,
    dateFrom,
    dateTo,
    rowLimit,
    maxWorkers: maxWorkersSet ?? host.cpus.value,
    maxWorkersSource: maxWorkersSet !== undefined ? "MAX_WORKERS" : host.cpus.source,
    memoryBudgetBytes,
    memoryBudgetSource,
    memoryLimitBytes: host.memoryLimit.value,
    memoryLimitSource: host.memoryLimit.source,
    minRows,
    minColumns,
    keepCheckpoints,
    logLevel: levelRaw as LogLevel,
    logFormat,
    cloudRun: Object.freeze({
      job: raw("CLOUD_RUN_JOB"),
      execution: raw("CLOUD_RUN_EXECUTION"),
      taskIndex: platformInt("CLOUD_RUN_TASK_INDEX", 0),
      taskCount: platformInt("CLOUD_RUN_TASK_COUNT", 1),
      attempt: platformInt("CLOUD_RUN_TASK_ATTEMPT", 0),
    }),
  });
}

/** The configuration as it is safe to print and to record in the manifest. */
export function effectiveConfig(config: Config): Record<string, unknown> {
  return {
    TARGET_PAIR: config.pair,
    BACKEND: config.backend,
    WAREHOUSE: config.warehouse,
    OUTPUT_URI: config.outputUri,
    WORK_DIR: config.workDir,
    FEATURES_DATASET: config.featuresDataset,
    TARGETS_DATASET: config.targetsDataset,
    DATE_FROM: config.dateFrom,
    DATE_TO: config.dateTo,
    ROW_LIMIT: config.rowLimit ?? null,
    MAX_WORKERS: config.maxWorkers,
    MEMORY_BUDGET: config.memoryBudgetBytes,
    MIN_ROWS: config.minRows,
    MIN_COLUMNS: config.minColumns,
    KEEP_CHECKPOINTS: config.keepCheckpoints,
    LOG_LEVEL: config.logLevel,
  };
}
