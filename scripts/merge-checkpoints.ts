// Runs Stage 2's merge alone on a directory of checkpoints and prints one JSON line with its
// figures, the peak RSS among them (getrusage of this process). Used by the memory test and the
// merge benchmark; a person can use it to try a MEMORY_BUDGET on checkpoints kept with
// KEEP_CHECKPOINTS=true.
//   node scripts/merge-checkpoints.ts --target T.parquet --features DIR --budget 3GiB --out OUT.parquet
import { readdir } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { mergeCheckpoints } from "../src/merge/merge.ts";
import { readFooterSummary } from "../src/parquet/footer.ts";
import { peakRssBytes } from "../src/peak-rss.ts";
import { chooseScratch, sweepStaleScratch } from "../src/merge/scratch.ts";
import { detectCpus, detectMemoryLimit } from "../src/resources.ts";
import { parseSize } from "../src/units.ts";

const { values } = parseArgs({
  options: {
    target: { type: "string" },
    features: { type: "string" },
    budget: { type: "string", default: "3GiB" },
    out: { type: "string" },
    strategy: { type: "string", default: "auto" },
    workers: { type: "string" },
  },
});
const budgetBytes = parseSize(values.budget ?? "");
if (!values.target || !values.features || !values.out || budgetBytes === undefined || !["auto", "append", "ranges"].includes(values.strategy ?? "")) {
  process.stderr.write("usage: merge-checkpoints --target T.parquet --features DIR --budget 3GiB --out OUT.parquet [--strategy auto|append|ranges] [--workers N]\n");
  process.exit(2);
}
const workers = values.workers === undefined ? detectCpus().value : Number(values.workers);
if (!Number.isInteger(workers) || workers < 1) {
  process.stderr.write("merge-checkpoints: --workers must be a positive integer\n");
  process.exit(2);
}
const files = (await readdir(values.features))
  .filter((f) => f.endsWith(".parquet") && path.resolve(values.features!, f) !== path.resolve(values.target!))
  .sort()
  .map((f) => path.join(values.features!, f));
let columns = (await readFooterSummary(values.target)).columnNames.length;
for (const f of files) columns += (await readFooterSummary(f)).columnNames.length - 1;

// The same choice as the job's merge stage (src/merge/scratch.ts).
sweepStaleScratch();
const scratch = chooseScratch({ workDirParts: `${values.out}.parts`, pair: "bench", memoryLimitBytes: detectMemoryLimit().value, budgetBytes });
const started = performance.now();
const result = await mergeCheckpoints({
  target: values.target,
  features: files.map((f) => ({ table: path.basename(f, ".parquet"), path: f })),
  columns,
  budgetBytes,
  partsDir: scratch.dir,
  maxWaitingBytes: scratch.maxWaitingBytes,
  outPath: values.out,
  strategy: values.strategy as "auto" | "append" | "ranges",
  workers,
  onProgress: process.env.MERGE_TRACE ? (done, total) => process.stderr.write(`range ${done}/${total} rss ${(process.memoryUsage.rss() / 2 ** 20).toFixed(0)} MiB peak ${(peakRssBytes() / 2 ** 20).toFixed(0)} MiB\n`) : undefined,
});
const seconds = (performance.now() - started) / 1000;
process.stdout.write(
  `${JSON.stringify({
    files: files.length + 1,
    rows: result.rows,
    columns: result.columns,
    rowGroups: result.rowGroups,
    strategy: result.strategy,
    workers: result.workers,
    scratch: scratch.dir,
    rowsPerRange: result.plan.rowsPerRange,
    bytes: result.bytes,
    seconds: Number(seconds.toFixed(3)),
    prepare_s: Number(result.phaseSeconds.prepare.toFixed(3)),
    assemble_s: Number(result.phaseSeconds.assemble.toFixed(3)),
    budget_bytes: budgetBytes,
    peak_rss_bytes: peakRssBytes(),
  })}\n`,
);
