// Cold start, measured on the image's own install: reproduces Dockerfile.cloudrun's runtime stage
// in a temporary directory (npm ci --omit=dev under Node 24, as the image does), reports the size
// of that production dependency tree, then starts the image's entrypoint several times and reads
// when it made its first warehouse request (the `startupMs` the job logs, counted from the
// process's start), on the embedded backend and with BACKEND=gcp against the local stand-ins.
// Prints a summary to stderr and one JSON line to stdout.
//
//   npm run cold-start -- [--runs 5] [--backend local|gcp|both] [--context DIR] [--keep]
//
// --context measures another checkout (a branch to compare) instead of this one.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { startBigQueryStandIns } from "../../standins/bigquery.ts";
import { buildRuntimeImage, installSize, runEntrypoint, type RuntimeImage } from "../../standins/container.ts";
import { startGcsStandIn } from "../../standins/gcs.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../../standins/tiny-warehouse.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const PAIR = "eurusd";

const { values } = parseArgs({ options: { runs: { type: "string", default: "5" }, backend: { type: "string", default: "both" }, context: { type: "string", default: ROOT }, keep: { type: "boolean", default: false } } });
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1 || runs > 50) throw new Error(`--runs: expected 1 to 50 (got ${values.runs})`);
if (!["local", "gcp", "both"].includes(values.backend)) throw new Error(`--backend: expected local, gcp or both (got ${values.backend})`);

interface Figures {
  runs: number;
  /** The job's own figure: ms from process start to its first warehouse request. */
  startupMs: { median: number; min: number; max: number };
  /** The same seen from outside: ms from spawn to that log line arriving. */
  spawnToFirstRequestMs: { median: number; min: number; max: number };
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return { median: Math.round(s[Math.floor((s.length - 1) / 2)]!), min: Math.round(s[0]!), max: Math.round(s.at(-1)!) };
};

async function measure(image: RuntimeImage, env: Record<string, string>, label: string): Promise<Figures> {
  const startups: number[] = [];
  const arrivals: number[] = [];
  for (let i = 0; i < runs; i += 1) {
    const run = await runEntrypoint(image, { ...env, WORK_DIR: path.join(env.WORK_DIR!, String(i)) }, { stopWhen: (line) => line.firstRequest !== undefined, timeoutMs: 60_000 });
    const index = run.lines.findIndex((l) => l.firstRequest !== undefined);
    if (index < 0) throw new Error(`${label}: no first-request line (exit ${run.code}):\n${run.stdout.slice(-2000)}${run.stderr.slice(-2000)}`);
    startups.push(run.lines[index]!.startupMs as number);
    arrivals.push(run.arrivalMs[index]!);
  }
  return { runs, startupMs: stats(startups), spawnToFirstRequestMs: stats(arrivals) };
}

const dir = await mkdtemp(path.join(tmpdir(), "cold-start-"));
try {
  process.stderr.write(`reproducing the runtime image in ${dir} (npm ci --omit=dev)...\n`);
  const [image] = await Promise.all([buildRuntimeImage({ contextDir: path.resolve(values.context), outDir: path.join(dir, "image") }), buildTinyWarehouse({ path: path.join(dir, "warehouse.duckdb"), pairs: [PAIR] })]);
  const size = await installSize(path.join(image.workdir, "node_modules"));
  const base = { TARGET_PAIR: PAIR, OUTPUT_URI: path.join(dir, "bucket"), WORK_DIR: path.join(dir, "work"), MAX_WORKERS: "1", ...TINY_VALIDATION_ENV };
  const result: Record<string, unknown> = {
    node: process.version,
    productionInstall: { bytes: size.bytes, mib: Number((size.bytes / 1024 ** 2).toFixed(1)), packages: size.packages, installSeconds: Number(image.installSeconds.toFixed(1)) },
  };
  if (values.backend !== "gcp") result.local = await measure(image, { ...base, WAREHOUSE: path.join(dir, "warehouse.duckdb") }, "local");
  if (values.backend !== "local") {
    const bq = await startBigQueryStandIns({ warehouse: path.join(dir, "warehouse.duckdb") });
    const gcs = await startGcsStandIn({ buckets: ["cold-start"] });
    try {
      result.gcp = await measure(
        image,
        { ...base, BACKEND: "gcp", GCP_PROJECT: bq.project, BIGQUERY_ENDPOINT: bq.bigqueryEndpoint, BIGQUERY_STORAGE_ENDPOINT: bq.storageEndpoint, GCS_ENDPOINT: gcs.endpoint, OUTPUT_URI: "gs://cold-start/out" },
        "gcp",
      );
    } finally {
      await bq.close();
      await gcs.close();
    }
  }
  const line = (name: string) => {
    const f = result[name] as Figures | undefined;
    return f ? `  ${name}: first warehouse request ${f.startupMs.median} ms after process start (median of ${f.runs}; ${f.startupMs.min}-${f.startupMs.max}), ${f.spawnToFirstRequestMs.median} ms from spawn\n` : "";
  };
  process.stderr.write(`production install: ${(size.bytes / 1024 ** 2).toFixed(1)} MiB in ${size.packages} packages (node_modules of the runtime image)\n${line("local")}${line("gcp")}`);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} finally {
  if (values.keep) process.stderr.write(`kept ${dir}\n`);
  else await rm(dir, { recursive: true, force: true });
}
