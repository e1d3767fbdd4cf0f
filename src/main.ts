// Entrypoint: config -> logger -> backends -> stages -> exit code.
import { STAGES } from "../stages/index.ts";
import { parseConfig, realHostFacts, type Config } from "./config.ts";
import { ConfigError, describeError } from "./errors.ts";
import { createLogger, loggerBase } from "./log.ts";
import { EXIT_CONFIG, EXIT_FAILED, runPipeline } from "./pipeline.ts";

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
  log.info(
    {
      workers: config.maxWorkers,
      workersSource: config.maxWorkersSource,
      memoryLimitBytes: config.memoryLimitBytes,
      memoryLimitSource: config.memoryLimitSource,
      memoryBudgetBytes: config.memoryBudgetBytes,
      node: process.version,
    },
    `building training_${config.pair}.parquet: warehouse ${config.warehouse}, output ${config.outputUri}, work dir ${config.workDir}`,
  );

  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log.warn({ signal }, `received ${signal}: stopping; checkpoints already written are kept for the next attempt`);
    controller.abort(new Error(`received ${signal}`));
  };
  process.once("SIGTERM", onSignal);
  process.once("SIGINT", onSignal);

  const { DuckDBWarehouse } = await import("./warehouse/duckdb.ts");
  const { LocalDirectoryBucket } = await import("./bucket/local.ts");
  let warehouse;
  try {
    warehouse = await DuckDBWarehouse.open(config.warehouse);
    const bucket = new LocalDirectoryBucket(config.outputUri);
    // Checked before any extraction, so a long run never ends on a permission error.
    await bucket.checkWritable();
    const outcome = await runPipeline({ config, log, warehouse, bucket, stages: STAGES, signal: controller.signal });
    return outcome.exitCode;
  } catch (err) {
    log.error({ err }, describeError(err));
    return EXIT_FAILED;
  } finally {
    await warehouse?.close();
  }
}

process.exitCode = await main();
