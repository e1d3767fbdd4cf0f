// Benchmark contender "floor": read every checkpoint once and write the same data as parquet
// with the merge's writer settings (codec, level, statistics and, with --row-group-rows, the row
// groups of the merge's output), no join. Prints one JSON line with its figures.
//   node scripts/bench/floor.ts --features DIR --out DIR [--row-group-rows N]
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { setImmediate as yieldToEventLoop } from "node:timers/promises";
import { parseArgs } from "node:util";
import pl from "nodejs-polars";
import { releaseNativeMemory } from "../../src/merge/native-memory.ts";
import { peakRssBytes } from "../../src/peak-rss.ts";

const { values } = parseArgs({ options: { features: { type: "string" }, out: { type: "string" }, "row-group-rows": { type: "string" } } });
const rowGroupSize = values["row-group-rows"] === undefined ? undefined : Number(values["row-group-rows"]);
if (!values.features || !values.out || (rowGroupSize !== undefined && !(Number.isSafeInteger(rowGroupSize) && rowGroupSize > 0))) {
  process.stderr.write("usage: floor --features DIR --out DIR [--row-group-rows N]\n");
  process.exit(2);
}
const files = (await readdir(values.features)).filter((f) => f.endsWith(".parquet")).sort();
await rm(values.out, { recursive: true, force: true });
await mkdir(values.out, { recursive: true });
const started = performance.now();
let bytes = 0;
for (const f of files) {
  const out = path.join(values.out, f);
  await pl
    .scanParquet(path.join(values.features, f))
    .sinkParquet(out, { compression: "zstd", compressionLevel: 1, statistics: true, ...(rowGroupSize ? { rowGroupSize } : {}) })
    .collect();
  bytes += (await stat(out)).size;
  await yieldToEventLoop();
  releaseNativeMemory();
}
const seconds = (performance.now() - started) / 1000;
await rm(values.out, { recursive: true, force: true });
process.stdout.write(`${JSON.stringify({ files: files.length, row_group_rows: rowGroupSize ?? null, seconds: Number(seconds.toFixed(3)), bytes, peak_rss_bytes: peakRssBytes() })}\n`);
