// The job's environment variables, declared once: name, default, what is accepted (the words of
// the message when a value is refused) and the parser. parseConfig (../config.ts) reads every
// variable through `readAll`, so each one is parsed in one place and every refusal reads
// `NAME: expected <what is accepted> (got "<value>")`. Rules that tie variables together (only
// with BACKEND=gcp, DATE_FROM before DATE_TO, ...) are parseConfig's.
import path from "node:path";
import { DEFAULT_FEATURES_DATASET, DEFAULT_TARGETS_DATASET } from "../constants.ts";
import { isLoopbackHost } from "../loopback.ts";
import { SCHEMA_CHANGE_POLICIES, type SchemaChangePolicy } from "../schema-change.ts";
import { parseDuration, parseSize } from "../units.ts";

export type Env = Readonly<Record<string, string | undefined>>;

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Where objects go: a local directory or a Cloud Storage bucket and prefix. */
export type Location = { kind: "local"; uri: string; dir: string } | { kind: "gcs"; uri: string; bucket: string; prefix: string };

export const DEFAULTS = Object.freeze({
  WAREHOUSE: "data/warehouse.duckdb",
  OUTPUT_URI: "data/bucket",
  DATE_FROM: "2020-01-01",
  DATE_TO: "2024-12-31",
  MIN_ROWS: 100_000,
  MIN_COLUMNS: 10_000,
  SCHEMA_CHANGE: "warn",
});

/** A refusal: what the variable accepts, for the message (a parser may refuse in more than one way). */
export interface Refused {
  refused: string;
}

/** What a parser may need besides the text: where relative paths start. */
export interface ParseContext {
  cwd: string;
  tmpDir: string;
}

export interface Variable<T> {
  /** The value used when the variable is unset or blank. */
  fallback?: string | ((ctx: ParseContext) => string);
  /** What is accepted, in the words of the refusal. */
  accepts: string;
  parse: (text: string, ctx: ParseContext) => T | Refused;
}

const PROJECT_ID = /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/;
const BQ_LOCATION = /^[A-Za-z][A-Za-z0-9-]{1,40}$/;
const GCS_URI = /^gs:\/\/([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:\/(.*))?$/;
const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,1023}$/;
const ISO_DATE = /^\d{4}-\d{2}-\d{2}$/;
const MIN_MEMORY_BUDGET_BYTES = 64 * 1024 ** 2;

function refused(accepts: string): Refused {
  return { refused: accepts };
}

function isRefused(v: unknown): v is Refused {
  return typeof v === "object" && v !== null && "refused" in v;
}

const matching = (pattern: RegExp, accepts: string, fallback?: string): Variable<string> => ({
  ...(fallback !== undefined ? { fallback } : {}),
  accepts,
  parse: (text) => (pattern.test(text) ? text : refused(accepts)),
});

/** One of `values`, compared in lower case. */
const oneOf = <T extends string>(values: readonly T[], accepts: string, fallback?: T): Variable<T> => ({
  ...(fallback !== undefined ? { fallback } : {}),
  accepts,
  parse: (text) => (values.includes(text.toLowerCase() as T) ? (text.toLowerCase() as T) : refused(accepts)),
});

const flag = (accepts: string): Variable<boolean> => ({
  fallback: "false",
  accepts,
  parse: (text) => (["true", "false"].includes(text.toLowerCase()) ? text.toLowerCase() === "true" : refused(accepts)),
});

const wholeNumber = (max = Number.MAX_SAFE_INTEGER, fallback?: number): Variable<number> => {
  const accepts = `a whole number from 1 to ${max.toLocaleString("en-US")}`;
  return {
    ...(fallback !== undefined ? { fallback: String(fallback) } : {}),
    accepts,
    parse: (text) => (/^\d+$/.test(text) && Number(text) >= 1 && Number(text) <= max ? Number(text) : refused(accepts)),
  };
};

/** Set by Cloud Run: any whole number. */
const platformNumber = (fallback: number): Variable<number> => ({
  fallback: String(fallback),
  accepts: "a whole number (set by Cloud Run)",
  parse: (text) => (/^\d+$/.test(text) ? Number(text) : refused("a whole number (set by Cloud Run)")),
});

const isoDate = (fallback: string): Variable<string> => ({
  fallback,
  accepts: "a date like 2020-01-01",
  parse: (text) => {
    const parsed = ISO_DATE.test(text) ? new Date(`${text}T00:00:00Z`) : undefined;
    return parsed && !Number.isNaN(parsed.getTime()) && parsed.toISOString().slice(0, 10) === text ? text : refused("a date like 2020-01-01");
  },
});

/** An endpoint override: an http(s) origin; plain http only to this machine (it would carry the token and the rows in clear text). */
const endpoint = (): Variable<string> => ({
  accepts: "an http(s) URL with a host and port only, e.g. http://127.0.0.1:9050 (for a local stand-in; leave unset for Google)",
  parse: (text) => {
    let url: URL | undefined;
    try {
      url = new URL(text);
    } catch {
      url = undefined;
    }
    if (!url || !["http:", "https:"].includes(url.protocol) || url.pathname.replace(/\/+$/, "") !== "" || url.search !== "") {
      return refused("an http(s) URL with a host and port only, e.g. http://127.0.0.1:9050 (for a local stand-in; leave unset for Google)");
    }
    if (url.protocol === "http:" && !isLoopbackHost(url.hostname)) {
      return refused(
        "https:// for a remote endpoint, or http:// only on a loopback address (127.0.0.1, ::1, localhost) for a local stand-in; leave unset for Google",
      );
    }
    return url.origin;
  },
});

/** A local directory or gs://bucket/prefix. */
const location = (fallback: string): Variable<Location> => ({
  fallback,
  accepts: "a local directory or gs://<bucket>/<prefix>",
  parse: (text, ctx) => {
    if (text.startsWith("gs://")) {
      const m = GCS_URI.exec(text);
      if (!m) return refused("gs://<bucket>/<optional prefix> with a valid bucket name");
      const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
      return { kind: "gcs", uri: `gs://${m[1]}${prefix ? `/${prefix}` : ""}`, bucket: m[1]!, prefix };
    }
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text) && !text.startsWith("file://")) return refused("a local directory or gs://<bucket>/<prefix>");
    const dir = path.resolve(ctx.cwd, text.replace(/^file:\/\//, ""));
    return { kind: "local", uri: dir, dir };
  },
});

const localPath = (fallback: string | ((ctx: ParseContext) => string)): Variable<string> => ({
  fallback,
  accepts: "a path",
  parse: (text, ctx) => path.resolve(ctx.cwd, text),
});

/** A fraction above 0 and at most 0.5. */
const faultRate: Variable<number> = {
  accepts: "a fraction above 0 and at most 0.5, like 0.2 (testing only; leave unset in production)",
  parse: (text) => {
    const rate = /^(0(\.\d+)?|0?\.\d+)$/.test(text) ? Number(text) : NaN;
    return rate > 0 && rate <= 0.5 ? rate : refused("a fraction above 0 and at most 0.5, like 0.2 (testing only; leave unset in production)");
  },
};

/** Every variable the job reads, in the order its problems are reported. */
export const VARIABLES = {
  PLAN_ONLY: flag("true or false (true: print the plan of each pair and exit, reading no table)"),
  BACKEND: oneOf(["local", "gcp"] as const, `"local" (the embedded DuckDB warehouse) or "gcp" (BigQuery)`, "local"),
  WAREHOUSE: localPath(DEFAULTS.WAREHOUSE),
  GCS_ENDPOINT: endpoint(),
  BIGQUERY_ENDPOINT: endpoint(),
  BIGQUERY_STORAGE_ENDPOINT: endpoint(),
  OUTPUT_URI: location(DEFAULTS.OUTPUT_URI),
  GCP_PROJECT: matching(PROJECT_ID, "a project ID like bqx-ml (6-30 lower-case letters, digits, hyphens)"),
  BQ_LOCATION: matching(BQ_LOCATION, "a BigQuery location like US or us-central1"),
  QUERY_TIMEOUT: {
    fallback: "10m",
    accepts: "a duration from 1s to 6h like 10m, 90s or 1h",
    parse: (text) => {
      const ms = parseDuration(text);
      return ms !== undefined && ms >= 1000 && ms <= 6 * 3_600_000 ? ms : refused("a duration from 1s to 6h like 10m, 90s or 1h");
    },
  } satisfies Variable<number>,
  BQ_READ_ROUTE: oneOf(
    ["table", "query"] as const,
    `"table" (Storage Read sessions on the tables themselves, no query jobs) or "query" (a query job per read)`,
  ),
  WORK_DIR: localPath((ctx) => path.join(ctx.tmpDir, "bqx-training")),
  FEATURES_DATASET: matching(IDENTIFIER, "a dataset name of letters, digits and underscores", DEFAULT_FEATURES_DATASET),
  TARGETS_DATASET: matching(IDENTIFIER, "a dataset name of letters, digits and underscores", DEFAULT_TARGETS_DATASET),
  DATE_FROM: isoDate(DEFAULTS.DATE_FROM),
  DATE_TO: isoDate(DEFAULTS.DATE_TO),
  ROW_LIMIT: wholeNumber(),
  ROW_GROUP_ROWS: wholeNumber(),
  MAX_WORKERS: wholeNumber(256),
  EXTRACT_CONCURRENCY: wholeNumber(1000),
  MIN_ROWS: wholeNumber(undefined, DEFAULTS.MIN_ROWS),
  MIN_COLUMNS: wholeNumber(undefined, DEFAULTS.MIN_COLUMNS),
  SCHEMA_CHANGE: oneOf(
    SCHEMA_CHANGE_POLICIES,
    "allow, warn or fail (what to do when the columns or tables differ from the published file's)",
    DEFAULTS.SCHEMA_CHANGE as SchemaChangePolicy,
  ),
  MEMORY_BUDGET: {
    accepts: "a size of at least 64MiB like 3GiB, 512MiB or 2GB",
    parse: (text) => {
      const bytes = parseSize(text);
      return bytes !== undefined && bytes >= MIN_MEMORY_BUDGET_BYTES ? bytes : refused("a size of at least 64MiB like 3GiB, 512MiB or 2GB");
    },
  } satisfies Variable<number>,
  FAULT_RATE: faultRate,
  FAULT_SEED: {
    fallback: "1",
    accepts: "a whole number (which calls fail, reproducibly)",
    parse: (text) => (/^\d{1,9}$/.test(text) ? Number(text) : refused("a whole number (which calls fail, reproducibly)")),
  } satisfies Variable<number>,
  FAULT_CORRUPT_UPLOADS: flag("true or false (testing only; leave unset in production)"),
  LOG_LEVEL: oneOf(LOG_LEVELS, LOG_LEVELS.join(", "), "info"),
  LOG_FORMAT: oneOf(["auto", "json", "pretty"] as const, "auto, json or pretty", "auto"),
  CLOUD_RUN_JOB: { accepts: "the job's name (set by Cloud Run)", parse: (text: string) => text } satisfies Variable<string>,
  CLOUD_RUN_EXECUTION: { accepts: "the execution's name (set by Cloud Run)", parse: (text: string) => text } satisfies Variable<string>,
  CLOUD_RUN_TASK_INDEX: platformNumber(0),
  CLOUD_RUN_TASK_COUNT: platformNumber(1),
  CLOUD_RUN_TASK_ATTEMPT: platformNumber(0),
} as const;

export type VariableName = keyof typeof VARIABLES;
type ValueOf<V> = V extends Variable<infer T> ? T : never;
/** Each variable's parsed value; undefined when unset without a default, or refused (then a problem says so). */
export type Values = { [K in VariableName]: ValueOf<(typeof VARIABLES)[K]> | undefined };

/** What was given, echoed back in a problem, except a URL's user:password@ (a credential in the wrong place). */
export function shownValue(got: string | undefined): string {
  return got === undefined ? "nothing" : JSON.stringify(got.replace(/\/\/[^/@\s]*@/g, "//[redacted]@"));
}

/** The variable's text: trimmed, and undefined when unset or blank. */
export function rawValue(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === "" ? undefined : v.trim();
}

/** Reads and parses every variable; each refusal becomes one problem line. */
export function readAll(env: Env, ctx: ParseContext, problems: string[]): Values {
  const values: Record<string, unknown> = {};
  for (const [name, variable] of Object.entries(VARIABLES) as Array<[VariableName, Variable<unknown>]>) {
    const given = rawValue(env, name);
    const fallback = typeof variable.fallback === "function" ? variable.fallback(ctx) : variable.fallback;
    const text = given ?? fallback;
    if (text === undefined) continue;
    const parsed = variable.parse(text, ctx);
    if (isRefused(parsed)) problems.push(`${name}: expected ${parsed.refused} (got ${shownValue(text)})`);
    else values[name] = parsed;
  }
  return values as Values;
}
