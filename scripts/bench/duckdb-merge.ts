// Benchmark contender "DuckDB": the same left join of every checkpoint onto the target's rows,
// done by DuckDB in one statement into one parquet file. Prints one JSON line.
//   node scripts/bench/duckdb-merge.ts --target T.parquet --features DIR --out OUT.parquet [--memory 12GB]
import os from "node:os";
import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { DuckDBInstance } from "@duckdb/node-api";
import { peakRssBytes } from "../../src/peak-rss.ts";
import { quoteString } from "../../src/sql.ts";

const { values } = parseArgs({
  options: { target: { type: "string" }, features: { type: "string" }, out: { type: "string" }, memory: { type: "string", default: "12GB" } },
});
if (!values.target || !values.features || !values.out) {
  process.stderr.write("usage: duckdb-merge --target T.parquet --features DIR --out OUT.parquet [--memory 12GB]\n");
  process.exit(2);
}
const target = path.resolve(values.target);
const files = (await readdir(values.features))
  .filter((f) => f.endsWith(".parquet") && path.resolve(values.features!, f) !== target)
  .sort()
  .map((f) => path.join(values.features!, f));
const started = performance.now();
const instance = await DuckDBInstance.create(":memory:", {
  memory_limit: values.memory!,
  threads: String(os.availableParallelism()),
  temp_directory: `${values.out}.duckdb-tmp`,
});
const c = await instance.connect();
let error: string | null = null;
try {
  const joins = files
    .map((f, i) => `LEFT JOIN read_parquet(${quoteString(f)}) f${i} ON f${i}.interval_time = t.interval_time`)
    .join("\n");
  const select = ["t.*", ...files.map((_, i) => `f${i}.* EXCLUDE (interval_time)`)].join(", ");
  await c.run(
    `COPY (SELECT ${select} FROM read_parquet(${quoteString(target)}) t\n${joins}\nORDER BY t.interval_time) TO ${quoteString(values.out)} (FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1)`,
  );
} catch (err) {
  error = (err as Error).message.split("\n")[0] ?? String(err);
} finally {
  c.closeSync();
  instance.closeSync();
  await rm(`${values.out}.duckdb-tmp`, { recursive: true, force: true });
}
const seconds = (performance.now() - started) / 1000;
const bytes = error ? 0 : (await stat(values.out)).size;
process.stdout.write(`${JSON.stringify({ files: files.length + 1, seconds: Number(seconds.toFixed(3)), bytes, peak_rss_bytes: peakRssBytes(), error })}\n`);
