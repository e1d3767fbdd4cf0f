// npm run bench:merge -- [--rows 177748] [--files 668] [--repeat 1] [--budget 3GiB] [--no-duckdb]
//                        [--sweep-rows 20000] [--no-sweep] [--dir bench]
// Measures this project's merge against the I/O floor (read every checkpoint once, write the same
// data, no join) and DuckDB joining the same files, each in its own child process, interleaved.
// Checkpoints shaped like EURUSD are made once and cached under --dir: the sample warehouse at
// --rows rows, extracted by the job's own Stage 1. Ends with one JSON line of figures, also
// written to <dir>/results/.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, readdir, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pino from "pino";
import { extractStage } from "../stages/extract.ts";
import { LocalDirectoryBucket } from "../src/bucket/local.ts";
import { parseConfig, realHostFacts } from "../src/config.ts";
import { layoutFor } from "../src/layout.ts";
import { createLogger } from "../src/log.ts";
import { buildSampleWarehouse } from "../src/sample/build.ts";
import { planRowRanges } from "../src/merge/plan.ts";
import { readFooterSummary } from "../src/parquet/footer.ts";
import { formatBytes } from "../src/units.ts";
import { parseSize } from "../src/units.ts";
import { DuckDBWarehouse } from "../src/warehouse/duckdb.ts";
import { generateCheckpoints } from "../test/support/checkpoints.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    rows: { type: "string", default: "177748" },
    files: { type: "string", default: "668" },
    repeat: { type: "string", default: "1" },
    budget: { type: "string", default: "3GiB" },
    "no-duckdb": { type: "boolean", default: false },
    "sweep-rows": { type: "string", default: "20000" },
    "no-sweep": { type: "boolean", default: false },
    dir: { type: "string", default: path.join(ROOT, "bench") },
  },
});
const rows = Number(values.rows);
const fileCount = Number(values.files);
const repeat = Number(values.repeat);
const budgetBytes = parseSize(values.budget!);
if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(fileCount) || fileCount < 2 || fileCount > 668 || !(repeat >= 1) || !budgetBytes) {
  process.stderr.write("bench:merge: --rows N (>0), --files 2..668, --repeat N (>0), --budget SIZE\n");
  process.exit(2);
}
const dir = path.resolve(values.dir!);
const say = (line: string) => process.stderr.write(`[bench:merge] ${line}\n`);
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** EURUSD-shaped checkpoints, made by the job's own extraction from the sample warehouse. */
async function productionShapeCheckpoints(): Promise<{ target: string; dir: string }> {
  const base = path.join(dir, `eurusd-${rows}`);
  const layout = layoutFor(path.join(base, "work"), "eurusd");
  const marker = path.join(base, "checkpoints.complete");
  if (!existsSync(marker)) {
    const warehouse = path.join(base, "warehouse.duckdb");
    await mkdir(base, { recursive: true });
    if (!existsSync(warehouse)) {
      say(`building the sample warehouse (${rows} rows, 668 tables) in ${warehouse}; cached for later runs`);
      await buildSampleWarehouse({ path: warehouse, pair: "eurusd", rows });
    }
    say("extracting 668 checkpoints with Stage 1 (cached for later runs)");
    const config = parseConfig(
      { TARGET_PAIR: "eurusd", WAREHOUSE: warehouse, WORK_DIR: path.join(base, "work"), OUTPUT_URI: path.join(base, "unused-bucket"), LOG_LEVEL: "warn", LOG_FORMAT: "json" },
      realHostFacts(),
    );
    const wh = await DuckDBWarehouse.open(warehouse);
    try {
      await extractStage.run({
        config,
        // stdout carries only the result line.
        log: createLogger({ level: "warn", format: "json", destination: pino.destination({ dest: 2, sync: true }) }),
        warehouse: wh,
        bucket: new LocalDirectoryBucket(path.join(base, "unused-bucket")),
        layout,
        signal: new AbortController().signal,
        now: () => performance.now(),
        state: { durations: {} },
      });
    } finally {
      await wh.close();
    }
    await rm(warehouse, { force: true });
    await writeFile(marker, new Date().toISOString());
  }
  const target = path.join(layout.checkpoints, "bqx_ml_v3_analytics_v2.targets_eurusd.parquet");
  if (fileCount === 668) return { target, dir: layout.checkpoints };
  // A subset spread evenly over the sorted names, so every family stays represented.
  const features = (await readdir(layout.checkpoints)).filter((f) => f.startsWith("bqx_ml_v3_features_v2.")).sort();
  const subset = path.join(base, `subset-${fileCount}`);
  await rm(subset, { recursive: true, force: true });
  await mkdir(subset, { recursive: true });
  const subsetTarget = path.join(subset, path.basename(target));
  await symlink(target, subsetTarget);
  for (let i = 0; i < fileCount - 1; i += 1) {
    const f = features[Math.floor((i * features.length) / (fileCount - 1))]!;
    await symlink(path.join(layout.checkpoints, f), path.join(subset, f));
  }
  return { target: subsetTarget, dir: subset };
}

interface Figures {
  seconds: number;
  peak_rss_bytes: number;
  bytes: number;
  rows?: number;
  columns?: number;
  error?: string | null;
  /** User + system CPU seconds of the child (GNU time), when available. */
  cpu_s?: number;
}

/** Highest VmHWM (peak resident set) among a process and its children, from /proc. */
function peakOfTree(pid: number): number {
  let peak = 0;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    peak = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) * 1024;
    for (const child of readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean)) {
      peak = Math.max(peak, peakOfTree(Number(child)));
    }
  } catch {
    // the process is gone
  }
  return peak;
}

/** Runs a contender script in its own process; peak RSS as the kernel accounted it (GNU time when present). */
function runChild(script: string, args: string[], timeoutS?: number): Promise<Figures> {
  const useTime = existsSync("/usr/bin/time");
  const command = useTime ? "/usr/bin/time" : process.execPath;
  const argv = useTime ? ["-f", "__peak_kb=%M __cpu_s=%U+%S", process.execPath, script, ...args] : [script, ...args];
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout stops GNU time and the contender together.
    const child = spawn(command, argv, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let timedOut = false;
    let peakAtStop = 0;
    const timer = timeoutS
      ? setTimeout(() => {
          timedOut = true;
          peakAtStop = peakOfTree(child.pid!);
          process.kill(-child.pid!, "SIGKILL");
        }, timeoutS * 1000)
      : undefined;
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      if (timedOut) {
        resolve({ seconds: Number.NaN, peak_rss_bytes: peakAtStop, bytes: 0, error: `did not finish within ${timeoutS} s (stopped)` });
        return;
      }
      const line = stdout.trim().split("\n").filter((l) => l.startsWith("{")).at(-1);
      const timed = /__peak_kb=(\d+)/.exec(stderr);
      const peakFromOs = timed ? Number(timed[1]) * 1024 : undefined;
      const cpu = /__cpu_s=([\d.]+)\+([\d.]+)/.exec(stderr);
      const cpuS = cpu ? Number((Number(cpu[1]) + Number(cpu[2])).toFixed(1)) : undefined;
      if (!line) {
        resolve({ seconds: Number.NaN, peak_rss_bytes: peakFromOs ?? 0, bytes: 0, error: `exit ${code}: ${stderr.trim().split("\n").slice(-3).join(" | ")}` });
        return;
      }
      const f = JSON.parse(line) as Figures;
      resolve({ ...f, peak_rss_bytes: peakFromOs ?? f.peak_rss_bytes, cpu_s: cpuS });
    });
  });
}

const { target, dir: features } = await productionShapeCheckpoints();
const out = path.join(dir, "out");
await mkdir(out, { recursive: true });
// The floor writes with the merge's writer settings, row-group size included: the rows per row
// group the merge's plan gives the output (under 512 MiB decoded, so a reader can stream it).
const outputShape = await (async () => {
  const keys = await readFooterSummary(target);
  let columns = keys.columnNames.length;
  for (const f of (await readdir(features)).filter((f) => f.endsWith(".parquet")).map((f) => path.join(features, f))) {
    if (path.resolve(f) !== path.resolve(target)) columns += (await readFooterSummary(f)).columnNames.length - 1;
  }
  return { columns, rowGroupRows: planRowRanges(keys.numRows, columns, budgetBytes).rowsPerRange };
})();
say(`output: ${outputShape.columns} columns, row groups of ${outputShape.rowGroupRows} rows (merge and floor alike)`);
const runs: Record<"merge" | "floor" | "duckdb", Figures[]> = { merge: [], floor: [], duckdb: [] };
for (let r = 0; r < repeat; r += 1) {
  say(`round ${r + 1}/${repeat}: merge (budget ${formatBytes(budgetBytes)})`);
  runs.merge.push(await runChild("scripts/merge-checkpoints.ts", ["--target", target, "--features", features, "--budget", String(budgetBytes), "--out", path.join(out, "merge.parquet")]));
  const m = runs.merge.at(-1)!;
  say(`  merge ${m.error ? `failed: ${m.error}` : `${m.seconds}s`} (cpu ${m.cpu_s ?? "?"}s), peak ${formatBytes(m.peak_rss_bytes)}; floor`);
  runs.floor.push(await runChild("scripts/bench/floor.ts", ["--features", features, "--out", path.join(out, "floor"), "--row-group-rows", String(outputShape.rowGroupRows)]));
  say(`  floor ${runs.floor.at(-1)!.seconds}s (cpu ${runs.floor.at(-1)!.cpu_s ?? "?"}s), peak ${formatBytes(runs.floor.at(-1)!.peak_rss_bytes)}`);
  if (!values["no-duckdb"]) {
    // DuckDB spills to disk instead of failing at times; past 3x the merge's time (10 minutes at
    // least) the comparison is settled and the run stops.
    const limitS = Math.max(600, Math.ceil(3 * (m.seconds || 0)));
    runs.duckdb.push(await runChild("scripts/bench/duckdb-merge.ts", ["--target", target, "--features", features, "--out", path.join(out, "duckdb.parquet"), "--memory", "12GB"], limitS));
    const d = runs.duckdb.at(-1)!;
    say(`  duckdb ${d.error ? `failed: ${d.error}` : `${d.seconds}s`}, peak ${formatBytes(d.peak_rss_bytes)}`);
  }
  await rm(path.join(out, "merge.parquet"), { force: true });
  await rm(path.join(out, "duckdb.parquet"), { force: true });
}

// Small enough that every table is aligned in slices at all three sizes: the sweep then shows
// that memory follows the budget, not the rows.
const SWEEP_BUDGET = "64MiB";
const sweep: Array<{ rows: number; files: number; columns: number; budget: string; seconds: number; peak_rss_bytes: number }> = [];
if (!values["no-sweep"]) {
  const base = Number(values["sweep-rows"]);
  for (const factor of [1, 2, 4]) {
    const sweepRows = base * factor;
    const sweepDir = path.join(dir, `sweep-${sweepRows}`);
    if (!existsSync(path.join(sweepDir, "complete"))) {
      say(`generating sweep checkpoints: ${sweepRows} rows x 40 files x 75 columns`);
      await generateCheckpoints({ dir: sweepDir, rows: sweepRows, files: 40, columnsPerFile: 75 });
      await writeFile(path.join(sweepDir, "complete"), "");
    }
    const f = await runChild("scripts/merge-checkpoints.ts", ["--target", path.join(sweepDir, "target.parquet"), "--features", sweepDir, "--budget", SWEEP_BUDGET, "--out", path.join(out, "sweep.parquet")]);
    await rm(path.join(out, "sweep.parquet"), { force: true });
    sweep.push({ rows: sweepRows, files: 41, columns: f.columns ?? 0, budget: SWEEP_BUDGET, seconds: f.seconds, peak_rss_bytes: f.peak_rss_bytes });
    say(`  sweep x${factor}: ${sweepRows} rows, ${f.seconds}s, peak ${formatBytes(f.peak_rss_bytes)} (budget ${SWEEP_BUDGET})`);
  }
}

const mergeS = median(runs.merge.map((m) => m.seconds));
const floorS = median(runs.floor.map((m) => m.seconds));
const duckOk = runs.duckdb.filter((d) => !d.error);
const duckdbS = duckOk.length > 0 ? median(duckOk.map((d) => d.seconds)) : null;
const result = {
  files: fileCount,
  rows: runs.merge[0]?.rows ?? rows,
  columns: runs.merge[0]?.columns ?? null,
  repeat,
  merge_s: mergeS,
  merge_peak_rss_bytes: Math.max(...runs.merge.map((m) => m.peak_rss_bytes)),
  merge_bytes: runs.merge[0]?.bytes ?? null,
  budget_bytes: budgetBytes,
  merge_cpu_s: median(runs.merge.map((m) => m.cpu_s ?? Number.NaN)),
  merge_seconds_each: runs.merge.map((m) => m.seconds),
  floor_s: floorS,
  floor_cpu_s: median(runs.floor.map((m) => m.cpu_s ?? Number.NaN)),
  floor_seconds_each: runs.floor.map((m) => m.seconds),
  floor_peak_rss_bytes: Math.max(...runs.floor.map((m) => m.peak_rss_bytes)),
  floor_bytes: runs.floor[0]?.bytes ?? null,
  row_group_rows: outputShape.rowGroupRows,
  duckdb_s: duckdbS,
  duckdb_peak_rss_bytes: runs.duckdb.length > 0 ? Math.max(...runs.duckdb.map((d) => d.peak_rss_bytes)) : null,
  duckdb_error: runs.duckdb.find((d) => d.error)?.error ?? (values["no-duckdb"] ? "not run (--no-duckdb)" : null),
  ratio_floor: Number((mergeS / floorS).toFixed(3)),
  ratio_duckdb: duckdbS ? Number((mergeS / duckdbS).toFixed(3)) : null,
  sweep,
};
await mkdir(path.join(dir, "results"), { recursive: true });
const resultsFile = path.join(dir, "results", `merge-${new Date().toISOString().replaceAll(":", "-")}.json`);
await writeFile(resultsFile, `${JSON.stringify(result, null, 2)}\n`);
say(`results written to ${resultsFile}`);
process.stdout.write(`${JSON.stringify(result)}\n`);
