// The merge holds one row range at a time: its peak RSS, measured by the operating system on the
// child process, stays near a small budget on data that is several times larger in memory.
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateCheckpoints } from "../support/checkpoints.ts";
import { ROOT } from "../support/run-job.ts";

const run = promisify(execFile);
const ROWS = 30_000;
const FILES = 60;
const COLUMNS_PER_FILE = 75;
const BUDGET_BYTES = 128 * 1024 ** 2;
/** Node with polars loaded, before any data: measured, not assumed (see beforeAll). */
let baselineRss = 0;
/**
 * What the process holds besides the budgeted data: polars' thread pools and scan machinery, and
 * memory the C allocator keeps after polars frees it (fragmentation across arenas). Measured at
 * 100-200 MiB on this machine; it does not grow with the data.
 */
const RUNTIME_ALLOWANCE_BYTES = 256 * 1024 ** 2;
let dir: string;
let shape: Awaited<ReturnType<typeof generateCheckpoints>>;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "merge-memory-"));
  shape = await generateCheckpoints({ dir: path.join(dir, "ckpt"), rows: ROWS, files: FILES, columnsPerFile: COLUMNS_PER_FILE });
  const { stdout } = await run(process.execPath, [
    "--input-type=module",
    "-e",
    `import pl from "nodejs-polars"; import { readFileSync } from "node:fs"; pl.readParquet(${JSON.stringify(shape.target)}, { columns: ["interval_time"] }); console.log(/VmHWM:\\s+(\\d+)/.exec(readFileSync("/proc/self/status", "utf8"))[1] * 1024)`,
  ], { cwd: ROOT });
  baselineRss = Number(stdout.trim());
}, 300_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("merge memory", () => {
  it.each(["ranges", "append"])("stays within its budget on data several times larger than the budget (%s)", async (strategy) => {
    const allAtOnceBytes = ROWS * (1 + 49 + FILES * COLUMNS_PER_FILE) * 8;
    expect(allAtOnceBytes).toBeGreaterThan(8 * BUDGET_BYTES);
    const out = path.join(dir, `merged-${strategy}.parquet`);
    const { stdout } = await run(
      process.execPath,
      [path.join(ROOT, "scripts", "merge-checkpoints.ts"), "--target", shape.target, "--features", path.join(dir, "ckpt"), "--budget", `${BUDGET_BYTES}`, "--out", out, "--strategy", strategy],
      { cwd: ROOT, maxBuffer: 1 << 20 },
    );
    const figures = JSON.parse(stdout.trim().split("\n").at(-1)!);
    expect(figures.strategy).toBe(strategy);
    console.log(`merge memory (${strategy}): peak RSS ${(figures.peak_rss_bytes / 2 ** 20).toFixed(0)} MiB, baseline ${(baselineRss / 2 ** 20).toFixed(0)} MiB, budget ${BUDGET_BYTES / 2 ** 20} MiB, all-at-once ${(allAtOnceBytes / 2 ** 20).toFixed(0)} MiB, ${figures.rowGroups} row groups, ${figures.seconds}s`);
    expect(figures.rows).toBe(ROWS);
    expect(figures.columns).toBe(1 + 49 + FILES * COLUMNS_PER_FILE);
    expect(figures.rowGroups).toBeGreaterThan(1);
    expect(figures.peak_rss_bytes).toBeLessThan(baselineRss + BUDGET_BYTES + RUNTIME_ALLOWANCE_BYTES);
    expect(figures.peak_rss_bytes).toBeLessThan(allAtOnceBytes / 2);

    // The bounded merge is still the right merge: spot-check against polars joining eagerly.
    const merged = pl.readParquet(out, { columns: ["interval_time", "t7_c3", "t58_c74", "target_bqx45_h15"] });
    const f7 = pl.readParquet(shape.features[7]!, { columns: ["interval_time", "t7_c3"] });
    const f58 = pl.readParquet(shape.features[58]!, { columns: ["interval_time", "t58_c74"] });
    const target = pl.readParquet(shape.target, { columns: ["interval_time", "target_bqx45_h15"] });
    const expected = target
      .join(f7, { on: "interval_time", how: "left", maintainOrder: "left" })
      .join(f58, { on: "interval_time", how: "left", maintainOrder: "left" })
      .select("interval_time", "t7_c3", "t58_c74", "target_bqx45_h15");
    expect(merged.frameEqual(expected, true)).toBe(true);
  });
});
