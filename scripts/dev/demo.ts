// `npm start`: the job on the embedded backend, end to end, for a person trying the tool.
// Builds the sample warehouse first when it is not there yet (the job itself never invents
// data), sets validation thresholds that fit the sample, says so, and runs the real entrypoint.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildSampleWarehouse } from "../../standins/sample/build.ts";
import { formatBytes } from "../../src/units.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const env = { ...process.env };
env.TARGET_PAIR ||= "eurusd";
env.WAREHOUSE ||= path.join(root, "data", "warehouse.duckdb");
env.OUTPUT_URI ||= path.join(root, "data", "bucket");
env.WORK_DIR ||= path.join(root, "data", "work");
const sampleRows = Number(env.SAMPLE_ROWS || 2_000);
// The sample is small so the first run is quick; production thresholds (100,000 rows) would
// reject it. These apply to the demo only; the job's defaults stay at production values.
env.MIN_ROWS ||= String(Math.floor(sampleRows * 0.9));
env.MIN_COLUMNS ||= "10000";

const say = (line: string) => process.stderr.write(`[demo] ${line}\n`);

if (env.BACKEND === "gcp") {
  // Pointed at BigQuery (or at `npm run standins`): there is no local warehouse to build.
  say(`BACKEND=gcp: reading from BigQuery${env.BIGQUERY_ENDPOINT ? ` at ${env.BIGQUERY_ENDPOINT}` : ""} (project ${env.GCP_PROJECT ?? "unset"})`);
} else if (!existsSync(env.WAREHOUSE)) {
  say(`no warehouse at ${env.WAREHOUSE}: building the sample for ${env.TARGET_PAIR} (${sampleRows} rows a table; SAMPLE_ROWS changes it)`);
  const started = Date.now();
  const built = await buildSampleWarehouse({ path: env.WAREHOUSE, pair: env.TARGET_PAIR, rows: sampleRows });
  say(`sample warehouse ready: ${built.path} (${built.tables} tables, ${formatBytes(built.bytes)}, ${((Date.now() - started) / 1000).toFixed(1)}s)`);
} else {
  say(`using the warehouse at ${env.WAREHOUSE}`);
}
say(`demo thresholds: MIN_ROWS=${env.MIN_ROWS} MIN_COLUMNS=${env.MIN_COLUMNS} (the job's own defaults are 100000 and 10000)`);
say(`output will appear in ${env.OUTPUT_URI}/training_${env.TARGET_PAIR}.parquet (+ .manifest.json)`);

const child = spawn(process.execPath, [path.join(root, "src", "main.ts")], { env, stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => {
  if (code === 0) say(`done: ${env.OUTPUT_URI}/training_${env.TARGET_PAIR}.parquet`);
  process.exitCode = code ?? (signal ? 128 : 1);
});
