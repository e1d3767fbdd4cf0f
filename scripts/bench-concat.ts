/**
 * Benchmark: byte-copy concatenation of parquet parts (concatParquetFiles) against polars'
 * lazy concat + sinkParquet. Not part of `npm test`.
 *
 *   PATH=$PWD/node_modules/.bin:$PATH node scripts/bench-concat.ts [parts] [rows] [cols]
 *
 * Defaults: 4 parts x 2,000 rows x 4,000 Float64 columns (+ the interval_time key), zstd,
 * ~12 % nulls. Each contender runs in its own child process; the child reports wall time and
 * its peak RSS read from /proc/self/status (VmHWM).
 *
 * Pitfall: do NOT use process.resourceUsage().maxRSS in a child spawned from a big parent.
 * Linux carries the forked copy's high-water mark across execve into ru_maxrss, so every child
 * reports at least the parent's RSS at spawn time. VmHWM belongs to the child's own address
 * space (created by execve) and is correct; `/usr/bin/time -v` is correct too.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { readFooterSummary } from "../src/parquet/footer.ts";

// nodejs-polars is imported dynamically so that the concat child never loads it.
type Polars = typeof import("nodejs-polars").default;
type Frame = ReturnType<Polars["readCSV"]>;

const BASE_US = 1_704_067_200_000_000;

interface ChildResult {
  mode: string;
  seconds: number;
  /** VmHWM of the child's own address space. */
  peakRssMiB: number;
  /** process.resourceUsage().maxRSS, inflated by the parent's RSS (shown for comparison). */
  ruMaxRssMiB: number;
  outBytes?: number;
}

function vmHwmMiB(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

function partFrame(pl: Polars, cols: number, rows: number, start: number, seed: number): Frame {
  const header = ["interval_time", ...Array.from({ length: cols }, (_, c) => `feat_${c}`)];
  const lines = [header.join(",")];
  let x = seed * 7919 + 1;
  for (let r = 0; r < rows; r++) {
    const row = new Array<string>(cols + 1);
    row[0] = String(BASE_US + (start + r) * 60_000_000);
    for (let c = 0; c < cols; c++) {
      x = (Math.imul(x, 1_103_515_245) + 12_345) >>> 0;
      row[c + 1] = x >>> 29 === 0 ? "" : String(x / 4_294_967_296 - 0.5);
    }
    lines.push(row.join(","));
  }
  return pl
    .readCSV(lines.join("\n"), { inferSchemaLength: 0 })
    .select(pl.col("interval_time").cast(pl.Int64).cast(pl.Datetime("us", "UTC")), pl.exclude("interval_time").cast(pl.Float64));
}

async function child(mode: string, dir: string, nParts: number): Promise<void> {
  const parts = Array.from({ length: nParts }, (_, i) => join(dir, `part-${i}.parquet`));
  const out = join(dir, `out-${mode}.parquet`);
  // Load only what the contender needs (polars' native library alone is ~100 MiB of RSS).
  const { concatParquetFiles } = await import("../src/parquet/concat.ts");
  const polars = mode === "polars" ? (await import("nodejs-polars")).default : undefined;
  const t0 = performance.now();
  if (mode === "concat") {
    await concatParquetFiles(parts, out);
  } else if (mode === "polars" && polars) {
    await polars
      .concat(parts.map((p) => polars.scanParquet(p)))
      .sinkParquet(out, { compression: "zstd" })
      .collect();
  } else if (mode !== "baseline") {
    throw new Error(`unknown mode ${mode}`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const result: ChildResult = { mode, seconds, peakRssMiB: vmHwmMiB(), ruMaxRssMiB: process.resourceUsage().maxRSS / 1024 };
  if (mode !== "baseline") result.outBytes = (await stat(out)).size;
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function runChild(mode: string, dir: string, nParts: number): ChildResult {
  const res = spawnSync(process.execPath, [import.meta.filename, "--child", mode, dir, String(nParts)], {
    stdio: ["ignore", "pipe", "inherit"],
    encoding: "utf8",
  });
  if (res.status !== 0) throw new Error(`${mode} child failed with status ${res.status}`);
  const line = res.stdout.trim().split("\n").at(-1) ?? "";
  return JSON.parse(line) as ChildResult;
}

async function main(): Promise<void> {
  const [nParts = 4, rows = 2_000, cols = 4_000] = process.argv.slice(2).map(Number);
  const pl = (await import("nodejs-polars")).default;
  const dir = await mkdtemp(join(tmpdir(), "bench-concat-"));
  try {
    const g0 = performance.now();
    let partBytes = 0;
    for (let i = 0; i < nParts; i++) {
      const path = join(dir, `part-${i}.parquet`);
      await partFrame(pl, cols, rows, i * rows, i + 1)
        .lazy()
        .sinkParquet(path, { compression: "zstd", rowGroupSize: rows })
        .collect();
      partBytes += (await stat(path)).size;
      await new Promise((r) => setImmediate(r)); // let polars release native memory
    }
    console.log(
      `generated ${nParts} parts x ${rows} rows x ${cols + 1} columns, ${(partBytes / 2 ** 20).toFixed(1)} MiB, in ${((performance.now() - g0) / 1000).toFixed(1)} s`,
    );

    const baseline = runChild("baseline", dir, nParts);
    const results = [runChild("concat", dir, nParts), runChild("polars", dir, nParts)];
    console.log(
      `parent RSS ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB; baseline child (node + hyparquet loaded): ` +
        `peak RSS ${baseline.peakRssMiB.toFixed(0)} MiB (ru_maxrss would say ${baseline.ruMaxRssMiB.toFixed(0)} MiB)`,
    );
    for (const r of results) {
      console.log(
        `${r.mode.padEnd(7)} ${r.seconds.toFixed(2).padStart(7)} s   peak RSS ${r.peakRssMiB.toFixed(0).padStart(6)} MiB   output ${((r.outBytes ?? 0) / 2 ** 20).toFixed(1)} MiB`,
      );
    }

    const s = await readFooterSummary(join(dir, "out-concat.parquet"));
    const p = await readFooterSummary(join(dir, "out-polars.parquet"));
    console.log(
      `concat output: ${s.numRows} rows, ${s.rowGroups.length} row groups, footer ${(s.footerBytes / 2 ** 20).toFixed(2)} MiB; ` +
        `polars output: ${p.numRows} rows, ${p.rowGroups.length} row groups`,
    );
    if (s.numRows !== nParts * rows || p.numRows !== nParts * rows) throw new Error("row counts differ");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === "--child") {
  await child(process.argv[3] ?? "", process.argv[4] ?? "", Number(process.argv[5] ?? 4));
} else {
  await main();
}
