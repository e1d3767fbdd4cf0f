// npm run standins -- [--warehouse data/warehouse.duckdb] [--latency-ms 0 | 2000-3000] [--session-latency-ms 0 | 300-800] [--env-file FILE] [--seed 1]
// Starts local stand-ins for the three Google APIs the job uses (Cloud Storage JSON, BigQuery
// REST, BigQuery Storage Read over gRPC) on 127.0.0.1, answering from a DuckDB warehouse file,
// with an output bucket (parts are staged under its _staging/ prefix). Prints the job's environment as
// NAME=value lines on stdout (and to --env-file), a request summary every few seconds on stderr,
// and runs until SIGINT/SIGTERM. Then, in another terminal:
//   set -a; . ./standins.env; set +a; TARGET_PAIR=eurusd npm run job
// Exit 2 on bad arguments or a missing warehouse.
import { existsSync } from "node:fs";
import { rename, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { DuckDBInstance } from "@duckdb/node-api";
import { DEFAULTS } from "../../src/config.ts";
import { DEFAULT_TARGETS_DATASET, TARGET_ROW_FILTER_COLUMN } from "../../src/constants.ts";
import { startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { varchar } from "../../standins/duckdb-text.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";

const OUTPUT_BUCKET = "bqx-standin-output";
const SUMMARY_EVERY_MS = 5_000;
/** The job's own MIN_ROWS default; a smaller sample needs a lower threshold to validate. */
const JOB_MIN_ROWS = DEFAULTS.MIN_ROWS;

const usage = `usage: npm run standins -- [--warehouse FILE] [--latency-ms 0 | MIN-MAX] [--session-latency-ms 0 | MIN-MAX] [--env-file FILE] [--seed N]
  --warehouse   DuckDB warehouse the stand-ins answer from (default ${DEFAULTS.WAREHOUSE}; build it with npm run sample)
  --latency-ms  added to every BigQuery query job: a number, or a range drawn per job, e.g. 2000-3000 (default 0)
  --session-latency-ms  added to every Storage Read CreateReadSession, likewise (default 0)
  --env-file    also write the NAME=value lines to this file (for: set -a; . FILE; set +a)
  --seed        seed of the stand-ins' random draws (default 1)`;

function fail(message: string): never {
  process.stderr.write(`standins: ${message}\n${usage}\n`);
  process.exit(2);
}

let values: {
  warehouse?: string | undefined;
  "latency-ms"?: string | undefined;
  "session-latency-ms"?: string | undefined;
  "env-file"?: string | undefined;
  seed?: string | undefined;
  help?: boolean | undefined;
};
try {
  ({ values } = parseArgs({
    // package.json runs `node scripts/dev/standins.ts --`: Node reads an `--env-file` it finds
    // anywhere in its arguments as its own option (and exits 9 when the file does not exist
    // yet), unless a `--` comes first. That `--` is dropped here.
    args: process.argv.slice(2).filter((a, i) => !(i === 0 && a === "--")),
    options: {
      warehouse: { type: "string" },
      "latency-ms": { type: "string" },
      "session-latency-ms": { type: "string" },
      "env-file": { type: "string" },
      seed: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (err) {
  fail((err as Error).message);
}
if (values.help) {
  process.stdout.write(`${usage}\n`);
  process.exit(0);
}

function parseLatency(text: string): number | [number, number] | undefined {
  const m = /^(\d+)(?:-(\d+))?$/.exec(text.trim());
  if (!m) return undefined;
  const low = Number(m[1]);
  if (m[2] === undefined) return low;
  const high = Number(m[2]);
  return high >= low ? [low, high] : undefined;
}

const warehouse = path.resolve(values.warehouse ?? DEFAULTS.WAREHOUSE);
if (!existsSync(warehouse)) {
  fail(`no warehouse at ${warehouse}: run \`npm run sample\` first (or pass --warehouse FILE)`);
}
const latency = parseLatency(values["latency-ms"] ?? "0");
if (latency === undefined) fail(`--latency-ms must be a number of milliseconds or a range like 2000-3000 (got ${JSON.stringify(values["latency-ms"])})`);
const sessionLatency = parseLatency(values["session-latency-ms"] ?? "0");
if (sessionLatency === undefined)
  fail(`--session-latency-ms must be a number of milliseconds or a range like 300-800 (got ${JSON.stringify(values["session-latency-ms"])})`);
const seed = Number(values.seed ?? 1);
if (!Number.isSafeInteger(seed)) fail(`--seed must be a whole number (got ${JSON.stringify(values.seed)})`);

const say = (line: string) => process.stderr.write(`[standins] ${line}\n`);

/** The fewest training rows any pair's target table gives, so MIN_ROWS can be set to fit the sample. */
async function smallestTargetRows(file: string): Promise<number | undefined> {
  const instance = await DuckDBInstance.create(file, { access_mode: "READ_ONLY" });
  const c = await instance.connect();
  try {
    const tables = (
      await c.runAndReadAll(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = '${DEFAULT_TARGETS_DATASET}' AND table_name LIKE 'targets\\_%' ESCAPE '\\'`,
      )
    ).getRowsJS();
    let fewest: number | undefined;
    for (const [name] of tables) {
      const reader = await c.runAndReadAll(
        `SELECT count(*) FROM "${DEFAULT_TARGETS_DATASET}"."${varchar(name)}" WHERE "${TARGET_ROW_FILTER_COLUMN}" IS NOT NULL`,
      );
      const n = Number(reader.getRowsJS()[0]?.[0] ?? 0);
      fewest = fewest === undefined ? n : Math.min(fewest, n);
    }
    return fewest;
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

const targetRows = await smallestTargetRows(warehouse);
let gcs: GcsStandIn | undefined;
let bigquery: StandIns | undefined;
try {
  gcs = await startGcsStandIn({ buckets: [OUTPUT_BUCKET] });
  bigquery = await startBigQueryStandIns({ warehouse, latencyMs: latency, sessionLatencyMs: sessionLatency, seed });
} catch (err) {
  await gcs?.close();
  say(`cannot start: ${(err as Error).message}`);
  process.exit(1);
}

const env: Array<[string, string]> = [
  ["BACKEND", "gcp"],
  ["GCP_PROJECT", bigquery.project],
  ["BQ_LOCATION", bigquery.location],
  ["BIGQUERY_ENDPOINT", bigquery.bigqueryEndpoint],
  ["BIGQUERY_STORAGE_ENDPOINT", bigquery.storageEndpoint],
  ["GCS_ENDPOINT", gcs.endpoint],
  // The sample's target table has fewer rows than the job's production threshold.
  ...(targetRows !== undefined && targetRows < JOB_MIN_ROWS ? [["MIN_ROWS", String(Math.max(1, Math.floor(targetRows * 0.9)))] as [string, string]] : []),
  // Last: a script reading stdout knows the stand-ins are ready when it sees this line.
  ["OUTPUT_URI", `gs://${OUTPUT_BUCKET}/training`],
];
const lines = env.map(([k, v]) => `${k}=${v}\n`).join("");
if (values["env-file"]) {
  const file = path.resolve(values["env-file"]);
  await writeFile(`${file}.tmp-${process.pid}`, lines);
  await rename(`${file}.tmp-${process.pid}`, file);
  say(`environment written to ${file}`);
}
process.stdout.write(lines);
say(
  `ready: BigQuery REST ${bigquery.bigqueryEndpoint}, Storage Read ${bigquery.storageEndpoint}, Cloud Storage ${gcs.endpoint} ` +
    `(bucket ${OUTPUT_BUCKET}) over ${warehouse}; query latency ${Array.isArray(latency) ? `${latency[0]}-${latency[1]}` : latency} ms` +
    (env.some(([k]) => k === "MIN_ROWS") ? `; MIN_ROWS lowered to fit the sample's ${targetRows} target rows` : ""),
);
say("stop with Ctrl-C (SIGINT) or SIGTERM");

// A summary line per interval, counts by method and status, so a run of 668 tables stays readable.
const started = Date.now();
let served = 0;
/** Query jobs inserted (discovery's INFORMATION_SCHEMA queries counted apart) and read sessions created, from the request log. */
const counted = { query_jobs: 0, extraction_query_jobs: 0, read_sessions: 0 };
/** The finished entries of the BigQuery request log, taken out of it; calls still running stay for the next summary. */
function finishedRequests(all = false): StandIns["requests"] {
  const log = bigquery!.requests;
  const done = log.filter((r) => all || (r.status !== 0 && r.status !== "RUNNING"));
  const running = all ? [] : log.filter((r) => r.status === 0 || r.status === "RUNNING");
  log.splice(0, log.length, ...running);
  return done;
}
function summarise(all = false): void {
  const bq = finishedRequests(all);
  const storage = gcs!.requests.splice(0);
  if (bq.length === 0 && storage.length === 0) return;
  served += bq.length + storage.length;
  for (const r of bq) {
    if (r.method === "jobs.insert" && r.status === 200) {
      counted.query_jobs += 1;
      if (!/INFORMATION_SCHEMA/.test(r.query ?? "")) counted.extraction_query_jobs += 1;
    }
    if (r.method === "CreateReadSession" && r.status === "OK") counted.read_sessions += 1;
  }
  // Counts by method, then the answers that were not a success, by status (a 404 from a
  // metadata read is how an upload learns the object does not exist yet).
  const count = (items: Array<{ key: string; status: string | undefined }>) => {
    const tally = (keys: string[]) => {
      const by = new Map<string, number>();
      for (const k of keys) by.set(k, (by.get(k) ?? 0) + 1);
      return [...by.entries()]
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `${k} ${n}`)
        .join(", ");
    };
    const statuses = items.flatMap((i) => (i.status === undefined ? [] : [`${i.key} ${i.status}`]));
    return `${items.length}${items.length ? ` (${tally(items.map((i) => i.key))}${statuses.length ? `; not OK: ${tally(statuses)}` : ""})` : ""}`;
  };
  const rest = bq
    .filter((r) => r.api === "bigquery")
    .map((r) => ({ key: r.method, status: typeof r.status === "number" && r.status >= 400 ? String(r.status) : undefined }));
  const read = bq
    .filter((r) => r.api === "storage")
    .map((r) => ({ key: r.method, status: typeof r.status === "string" && !["OK", "RUNNING"].includes(r.status) ? r.status : undefined }));
  const objects = storage.map((r) => ({ key: r.kind, status: r.status >= 400 ? String(r.status) : undefined }));
  say(`${new Date().toISOString().slice(11, 19)} bigquery ${count(rest)}; storage read ${count(read)}; cloud storage ${count(objects)}`);
}
const timer = setInterval(() => summarise(), SUMMARY_EVERY_MS);

let closing = false;
async function stop(signal: NodeJS.Signals): Promise<void> {
  if (closing) return;
  closing = true;
  clearInterval(timer);
  summarise(true);
  say(`${signal}: closing`);
  await Promise.allSettled([bigquery!.close(), gcs!.close()]);
  const cpu = process.cpuUsage();
  const figures = {
    seconds: (Date.now() - started) / 1000,
    requests: served,
    ...counted,
    cpu_user_s: cpu.user / 1e6,
    cpu_system_s: cpu.system / 1e6,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
  say(`stopped: ${JSON.stringify(figures)}`);
  process.exit(0);
}
process.on("SIGINT", (s) => void stop(s));
process.on("SIGTERM", (s) => void stop(s));
