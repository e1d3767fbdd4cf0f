// node scripts/bench-stitch.ts [--files 60] [--rows 30000] [--columns 60] [--rg 4096] [--budget 3GiB]
//                              [--dir /tmp/bench-stitch] [--skip merge,floor]
// Compares, each in its own child process (peak RSS = VmHWM of the child):
//   (a) align + stitch: every checkpoint left-joined onto the target keys with fixed row groups
//       (src/merge/align.ts), then stitched side by side without decoding (src/parquet/stitch.ts);
//   (b) the current merge: scripts/merge-checkpoints.ts --budget <budget>;
//   (c) the floor: read every checkpoint once with polars and write the same data (zstd 1), no join.
// Checkpoints come from test/support/checkpoints.ts and are cached in --dir. Not part of npm test.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pl from "nodejs-polars";
import { alignCheckpoint, readKeys } from "../src/merge/align.ts";
import { releaseNativeMemory } from "../src/merge/native-memory.ts";
import { readFooterSummary } from "../src/parquet/footer.ts";
import { stitchParquetColumns } from "../src/parquet/stitch.ts";
import { peakRssBytes } from "../src/peak-rss.ts";
import { generateCheckpoints } from "../test/support/checkpoints.ts";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    files: { type: "string", default: "60" },
    rows: { type: "string", default: "30000" },
    columns: { type: "string", default: "60" },
    rg: { type: "string", default: "4096" },
    budget: { type: "string", default: "3GiB" },
    dir: { type: "string", default: "/tmp/bench-stitch" },
    skip: { type: "string", default: "" },
    child: { type: "string" },
    src: { type: "string" },
    out: { type: "string" },
  },
});

async function dirBytes(d: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(d)) total += (await stat(path.join(d, f))).size;
  return total;
}

async function checkpointFiles(src: string): Promise<{ target: string; features: string[] }> {
  const features = (await readdir(src)).filter((f) => f.endsWith(".parquet") && f !== "target.parquet").sort().map((f) => path.join(src, f));
  return { target: path.join(src, "target.parquet"), features };
}

// ---------------------------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------------------------

async function childAlignStitch(src: string, out: string, rowGroupRows: number): Promise<void> {
  const started = performance.now();
  const { target, features } = await checkpointFiles(src);
  const alignedDir = `${out}.aligned`;
  await rm(alignedDir, { recursive: true, force: true });
  await mkdir(alignedDir, { recursive: true });
  const keys = readKeys(target);
  const aligned: string[] = [];
  for (const [i, f] of [target, ...features].entries()) {
    const file = path.join(alignedDir, `${String(i).padStart(4, "0")}.parquet`);
    await alignCheckpoint({ keys, source: f, outPath: file, rowGroupRows, table: path.basename(f, ".parquet"), omitKey: i > 0 });
    aligned.push(file);
  }
  const alignS = (performance.now() - started) / 1000;
  const alignedBytes = await dirBytes(alignedDir);
  const alignPeak = peakRssBytes();
  const t1 = performance.now();
  const res = await stitchParquetColumns(aligned, out);
  const stitchS = (performance.now() - t1) / 1000;
  const footer = await readFooterSummary(out);
  await rm(alignedDir, { recursive: true, force: true });
  process.stdout.write(
    `${JSON.stringify({
      seconds: Number(((performance.now() - started) / 1000).toFixed(3)),
      align_s: Number(alignS.toFixed(3)),
      stitch_s: Number(stitchS.toFixed(3)),
      rows: res.rows,
      columns: res.columns,
      rowGroups: res.rowGroups,
      bytes: res.bytes,
      footer_bytes: footer.footerBytes,
      aligned_bytes: alignedBytes,
      align_peak_rss_bytes: alignPeak,
      peak_rss_bytes: peakRssBytes(),
    })}\n`,
  );
}

async function childFloor(src: string, out: string): Promise<void> {
  const started = performance.now();
  const { target, features } = await checkpointFiles(src);
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  for (const [i, f] of [target, ...features].entries()) {
    const df = pl.readParquet(f);
    await df.lazy().sinkParquet(path.join(out, `${i}.parquet`), { compression: "zstd", compressionLevel: 1, statistics: true }).collect();
    await yieldToEventLoop();
    releaseNativeMemory();
  }
  const seconds = (performance.now() - started) / 1000;
  const bytes = await dirBytes(out);
  await rm(out, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify({ seconds: Number(seconds.toFixed(3)), bytes, peak_rss_bytes: peakRssBytes() })}\n`);
}

if (values.child) {
  const src = values.src!;
  const out = values.out!;
  if (values.child === "align-stitch") await childAlignStitch(src, out, Number(values.rg));
  else if (values.child === "floor") await childFloor(src, out);
  else throw new Error(`unknown child ${values.child}`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
// Parent
// ---------------------------------------------------------------------------------------------

interface Figures {
  seconds: number;
  peak_rss_bytes: number;
  bytes?: number;
  [k: string]: unknown;
}

function runChild(args: string[]): Promise<Figures> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const line = stdout.trim().split("\n").filter((l) => l.startsWith("{")).at(-1);
      if (code !== 0 || !line) reject(new Error(`${args.join(" ")}: exit ${code}: ${stderr.trim().split("\n").slice(-5).join(" | ")}`));
      else resolve(JSON.parse(line) as Figures);
    });
  });
}

const files = Number(values.files);
const rows = Number(values.rows);
const columns = Number(values.columns);
const dir = path.resolve(values.dir!);
const skip = new Set((values.skip ?? "").split(",").filter(Boolean));
const say = (line: string) => process.stderr.write(`[bench:stitch] ${line}\n`);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;

const src = path.join(dir, `src-${files}x${rows}x${columns}`);
if (!existsSync(path.join(src, "complete"))) {
  say(`generating ${files} checkpoints x ${rows} rows x ${columns} columns in ${src}`);
  await rm(src, { recursive: true, force: true });
  await generateCheckpoints({ dir: src, rows, files, columnsPerFile: columns });
  await writeFile(path.join(src, "complete"), "");
}
const out = path.join(dir, "out");
await mkdir(out, { recursive: true });
const results: Record<string, Figures> = {};

say(`(a) align + stitch, row groups of ${values.rg} rows`);
results.align_stitch = await runChild(["scripts/bench-stitch.ts", "--child", "align-stitch", "--src", src, "--out", path.join(out, "stitch.parquet"), "--rg", values.rg!]);
say(`    ${JSON.stringify(results.align_stitch)}`);
await rm(path.join(out, "stitch.parquet"), { force: true });

if (!skip.has("merge")) {
  say(`(b) merge-checkpoints --budget ${values.budget}`);
  results.merge = await runChild(["scripts/merge-checkpoints.ts", "--target", path.join(src, "target.parquet"), "--features", src, "--budget", values.budget!, "--out", path.join(out, "merge.parquet")]);
  say(`    ${JSON.stringify(results.merge)}`);
  await rm(path.join(out, "merge.parquet"), { force: true });
}
if (!skip.has("floor")) {
  say("(c) floor: read each checkpoint once, write it again (zstd 1), no join");
  results.floor = await runChild(["scripts/bench-stitch.ts", "--child", "floor", "--src", src, "--out", path.join(out, "floor")]);
  say(`    ${JSON.stringify(results.floor)}`);
}

for (const [name, f] of Object.entries(results)) {
  say(`${name.padEnd(13)} ${f.seconds.toFixed(2).padStart(8)} s   peak RSS ${mib(f.peak_rss_bytes).padStart(9)}   output ${mib(f.bytes ?? 0)}`);
}
process.stdout.write(`${JSON.stringify({ files: files + 1, rows, columns_per_file: columns, row_group_rows: Number(values.rg), ...results })}\n`);
