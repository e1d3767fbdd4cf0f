// Entrypoint: config -> logger -> backends -> stages -> exit code.
import { performance } from "node:perf_hooks";
import { STAGES } from "../stages/index.ts";
import type { Bucket } from "./bucket/port.ts";
import { parseConfig, realHostFacts, type Config, type Location } from "./config.ts";
import { ConfigError, JobError, describeError } from "./errors.ts";
import { buildTaskPairs } from "./fanout.ts";
import { createLogger, logProcessWarnings, loggerBase, type Logger } from "./log.ts";
import { EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED } from "./exit-codes.ts";
import { runPipeline } from "./pipeline.ts";
import { logFirstWarehouseRequest } from "./startup.ts";
import type { Warehouse } from "./warehouse/port.ts";

/** Only the backend in use is loaded: DuckDB never starts on Cloud Run, the Google clients never locally. */
async function openWarehouse(config: Readonly<Config>, log: Logger, signal: AbortSignal): Promise<Warehouse> {
  if (config.backend === "local") {
    const [{ DuckDBWarehouse }, { RetryingWarehouse }, { FaultyWarehouse }] = await Promise.all([
      import("./warehouse/duckdb.ts"),
      import("./warehouse/retrying.ts"),
      import("./faults.ts"),
    ]);
    const duckdb = await DuckDBWarehouse.open(config.warehouse, { signal });
    // The embedded file does not retry by itself (BigQuery's adapter does, so it is not wrapped).
    return new RetryingWarehouse(config.faults ? new FaultyWarehouse(duckdb, config.faults) : duckdb, { log, signal });
  }
  const { gcp } = config;
  const { BigQueryWarehouse } = await import("./warehouse/bigquery.ts");
  return new BigQueryWarehouse({
    project: gcp.project,
    location: gcp.location,
    apiEndpoint: gcp.bigqueryEndpoint,
    storageReadEndpoint: gcp.storageReadEndpoint,
    queryTimeoutMs: gcp.queryTimeoutMs,
    log,
  });
}

async function openBucket(location: Location, config: Readonly<Config>, log: Logger, signal: AbortSignal): Promise<Bucket> {
  if (location.kind === "local") {
    const [{ LocalDirectoryBucket }, { RetryingBucket }, { FaultyBucket }] = await Promise.all([
      import("./bucket/local.ts"),
      import("./bucket/retrying.ts"),
      import("./faults.ts"),
    ]);
    const local = new LocalDirectoryBucket(location.dir, { corruptCopies: config.corruptUploads, signal });
    // The local directory does not retry by itself (Cloud Storage's adapter does, so it is not wrapped).
    return new RetryingBucket(config.faults ? new FaultyBucket(local, config.faults) : local, { log, signal });
  }
  const { GcsBucket } = await import("./bucket/gcs.ts");
  return new GcsBucket(location.uri, { apiEndpoint: config.gcsEndpoint, projectId: config.gcp?.project, log, signal });
}

function describeBackends(config: Readonly<Config>): string {
  const source =
    config.backend === "gcp"
      ? `BACKEND=gcp: BigQuery project ${config.gcp?.project}${config.gcp?.location ? ` in ${config.gcp.location}` : ""}${config.gcp?.bigqueryEndpoint ? ` at ${config.gcp.bigqueryEndpoint}` : ""}`
      : `BACKEND=local: warehouse ${config.warehouse}`;
  if (config.planOnly)
    return `PLAN_ONLY=true: planning ${config.pairs.join(", ")} (nothing is read or written) with ${source}; output ${config.output.uri}; work dir ${config.workDir}`;
  return `building ${config.pairs.map((p) => `training_${p}.parquet`).join(", ")} with ${source}; output ${config.output.uri} (parts staged under its _staging/ prefix, the file assembled there); work dir ${config.workDir}`;
}

async function main(): Promise<number> {
  let config: Readonly<Config>;
  try {
    config = parseConfig(process.env, realHostFacts());
  } catch (err) {
    if (err instanceof ConfigError) {
      // No logger settings can be trusted yet; write one Cloud Logging-shaped line to stderr.
      process.stderr.write(`${JSON.stringify({ severity: "ERROR", message: err.message, reason: "config", problems: err.problems })}\n`);
      return EXIT_CONFIG;
    }
    throw err;
  }
  const log = createLogger({ level: config.logLevel, format: config.logFormat, base: loggerBase(config) });
  logProcessWarnings(log);
  log.info(
    {
      backend: config.backend,
      output: config.output.uri,
      workers: config.maxWorkers,
      workersSource: config.maxWorkersSource,
      extractConcurrency: config.extractConcurrency,
      memoryLimitBytes: config.memoryLimitBytes,
      memoryLimitSource: config.memoryLimitSource,
      memoryBudgetBytes: config.memoryBudgetBytes,
      node: process.version,
    },
    describeBackends(config),
  );

  if (config.corruptUploads) {
    log.warn(
      { faultCorruptUploads: true },
      "FAULT_CORRUPT_UPLOADS=true: every copy into the output directory gets one byte flipped; for testing the upload's verification only",
    );
  }
  if (config.faults) {
    log.warn(
      { faultRate: config.faults.rate, faultSeed: config.faults.seed },
      `FAULT_RATE=${config.faults.rate}: about ${Math.round(config.faults.rate * 100)}% of warehouse and bucket calls will fail with an injected transient fault (seed ${config.faults.seed}); for testing the retry paths only`,
    );
  }

  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log.warn({ signal }, `received ${signal}: stopping; parts already staged are kept for the next attempt`);
    controller.abort(new Error(`received ${signal}`));
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);

  let warehouse: Warehouse | undefined;
  try {
    warehouse = logFirstWarehouseRequest(await openWarehouse(config, log, controller.signal), log);
    // Staging logs one line per upload at info; only its warnings matter unless debugging.
    const bucket = await openBucket(
      config.output,
      config,
      log.child({ bucket: "output" }, { level: log.level === "info" ? "warn" : log.level }),
      controller.signal,
    );
    if (config.planOnly) {
      // The plan checks the output as the run does, and still plans every pair when it fails.
      const output = await bucket.checkWritable().then(
        () => ({ result: "ok" as const }),
        (error: unknown) => ({ result: "failed" as const, error }),
      );
      const { planPairs } = await import("../stages/plan.ts");
      return await planPairs({ config, log, warehouse, signal: controller.signal, now: () => performance.now(), output });
    }
    // Checked before any extraction, so a long run never ends on a permission error.
    await bucket.checkWritable();
    // --- fan-out (src/fanout.ts): one pipeline run per pair this task builds ---
    const opened = warehouse;
    return await buildTaskPairs({
      config,
      log,
      signal: controller.signal,
      build: (pairConfig, pairLog) => runPipeline({ config: pairConfig, log: pairLog, warehouse: opened, bucket, stages: STAGES, signal: controller.signal }),
    });
    // --- end fan-out ---
  } catch (err) {
    const interrupted = controller.signal.aborted;
    const job = err instanceof JobError ? err : undefined;
    log.error({ reason: interrupted ? "interrupted" : (job?.reason ?? "unexpected"), fix: job?.fix, err: job ? undefined : err }, describeError(err));
    return interrupted ? EXIT_INTERRUPTED : EXIT_FAILED;
  } finally {
    await warehouse?.close();
  }
}

process.exitCode = await main();
