// pino set up for Cloud Logging: one JSON object per line with `severity` and `message`, which
// Cloud Logging parses into structured entries. In a terminal the same records are pretty-printed.
import { createRequire } from "node:module";
import pino, { type DestinationStream, type Logger } from "pino";
import type PinoPretty from "pino-pretty";
import type { Config } from "./config.ts";

export type { Logger } from "pino";

const SEVERITY: Record<string, string> = {
  trace: "DEBUG",
  debug: "DEBUG",
  info: "INFO",
  warn: "WARNING",
  error: "ERROR",
  fatal: "CRITICAL",
};

/** Field names never written as they are: credentials and tokens. */
export const REDACTED_PATHS = [
  "token",
  "accessToken",
  "access_token",
  "refreshToken",
  "private_key",
  "credentials",
  "authorization",
  "headers.authorization",
  "*.token",
  "*.access_token",
  "*.private_key",
  "*.authorization",
];

export interface LoggerOptions {
  level: Config["logLevel"];
  format: Config["logFormat"];
  base?: Record<string, unknown>;
  /** Where lines go; stdout when omitted. Tests pass a stream to read the lines back. */
  destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  const common = {
    level: opts.level,
    messageKey: "message",
    base: opts.base ?? {},
    redact: { paths: REDACTED_PATHS, censor: "[redacted]" },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (opts.format === "pretty") {
    // Loaded only for a terminal: on Cloud Run (JSON) every task starts without it.
    const pretty = createRequire(import.meta.url)("pino-pretty") as typeof PinoPretty;
    const stream = pretty({
      sync: true,
      colorize: process.stdout.isTTY === true && opts.destination === undefined,
      messageKey: "message",
      translateTime: "HH:MM:ss",
      ignore: "pid,hostname",
      // A person reads the message; the structured fields stay in the JSON format.
      hideObject: true,
      ...(opts.destination ? { destination: opts.destination } : {}),
    });
    return pino(common, stream);
  }
  return pino(
    {
      ...common,
      formatters: { level: (label: string) => ({ severity: SEVERITY[label] ?? "DEFAULT" }) },
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

export function loggerBase(config: Config): Record<string, unknown> {
  // A task building several pairs (PAIRS) names the pair on each pair's child logger instead.
  const base: Record<string, unknown> = config.pairs.length > 1 ? {} : { pair: config.pair };
  const run = config.cloudRun;
  if (run.job) base.job = run.job;
  if (run.execution) base.execution = run.execution;
  if (run.taskCount > 1 || run.job) {
    base.task = run.taskIndex;
    base.attempt = run.attempt;
  }
  return base;
}

/**
 * A warning `@google-cloud/storage` 8 makes Node emit on every streamed download of more than
 * ~100 KB (teeny-request 11 on node-fetch 3 adds an 11th error/close listener to a PassThrough;
 * googleapis/google-cloud-node#9185): harmless, and known, so it is logged at debug only.
 */
const KNOWN_STORAGE_WARNING = /^Possible EventEmitter memory leak detected\. 11 (error|close) listeners added to \[PassThrough\]/;

/**
 * Node's process warnings go through the job's logger, as structured records, instead of Node's own
 * lines on stderr (which Cloud Logging shows as unparsed error entries). Called once, in main.
 */
export function logProcessWarnings(log: Pick<Logger, "warn" | "debug">): void {
  process.removeAllListeners("warning");
  process.on("warning", (warning: Error & { code?: string }) => {
    const fields = { warning: warning.name, ...(warning.code ? { code: warning.code } : {}) };
    if (warning.name === "MaxListenersExceededWarning" && KNOWN_STORAGE_WARNING.test(warning.message)) {
      log.debug({ ...fields, upstream: "googleapis/google-cloud-node#9185" }, `${warning.name}: ${warning.message}`);
    } else {
      log.warn(fields, `${warning.name}: ${warning.message}`);
    }
  });
}
