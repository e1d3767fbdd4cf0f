// `npm run sample -- --pair eurusd --rows 2000 --out data/warehouse.duckdb`
// Builds the deterministic sample warehouse (a DuckDB file shaped like the production BigQuery
// datasets) for local runs and tests. Defaults come from TARGET_PAIR / SAMPLE_ROWS / WAREHOUSE,
// then eurusd / 2000 / data/warehouse.duckdb. Exit 2 on bad arguments, 1 when the build fails.
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PAIRS } from "../../src/constants.ts";
import { buildSampleWarehouse, MAX_SAMPLE_ROWS } from "../../standins/sample/build.ts";
import { formatBytes } from "../../src/units.ts";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const usage = `usage: npm run sample -- [--pair <pair>] [--rows <n>] [--out <file.duckdb>]
  --pair  currency pair, lower case (default $TARGET_PAIR or eurusd); one of ${PAIRS.join(" ")}
  --rows  minutes (rows) per table, 1..${MAX_SAMPLE_ROWS} (default $SAMPLE_ROWS or 2000)
  --out   DuckDB file to write, replaced atomically (default $WAREHOUSE or data/warehouse.duckdb)`;

function fail(message: string): never {
  process.stderr.write(`sample: ${message}\n${usage}\n`);
  process.exit(2);
}

let values: { pair?: string | undefined; rows?: string | undefined; out?: string | undefined; help?: boolean | undefined };
try {
  ({ values } = parseArgs({
    options: { pair: { type: "string" }, rows: { type: "string" }, out: { type: "string" }, help: { type: "boolean", short: "h" } },
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

const from = (flag: string | undefined, envName: string) => (flag !== undefined ? "" : process.env[envName] !== undefined ? ` (from ${envName})` : "");

const pair = (values.pair ?? process.env.TARGET_PAIR ?? "eurusd").trim();
if (!PAIRS.includes(pair)) fail(`unknown pair ${JSON.stringify(pair)}${from(values.pair, "TARGET_PAIR")} (pairs are lower case, e.g. eurusd)`);

const rowsText = (values.rows ?? process.env.SAMPLE_ROWS ?? "2000").trim();
const rows = /^\d+$/.test(rowsText) ? Number(rowsText) : Number.NaN;
if (!Number.isSafeInteger(rows) || rows < 1 || rows > MAX_SAMPLE_ROWS) {
  fail(`--rows must be a whole number from 1 to ${MAX_SAMPLE_ROWS}, got ${JSON.stringify(rowsText)}${from(values.rows, "SAMPLE_ROWS")}`);
}

const outText = values.out ?? process.env.WAREHOUSE;
if (outText !== undefined && outText.trim() === "") fail("--out must not be empty");
// npm runs scripts from the package root; relative paths are meant from where the user typed them.
const out = outText === undefined ? path.join(root, "data", "warehouse.duckdb") : path.resolve(process.env.INIT_CWD ?? process.cwd(), outText);

const started = performance.now();
const tty = process.stderr.isTTY;
let lastShown = -1;
process.stderr.write(`sample: building ${out} for ${pair} with ${rows} rows a table...\n`);
try {
  const built = await buildSampleWarehouse({
    path: out,
    pair,
    rows,
    onProgress: (done, total) => {
      const percent = Math.floor((done / total) * 100);
      if (tty) process.stderr.write(`\rsample: ${done}/${total} tables (${percent}%)${done === total ? "\n" : ""}`);
      else if (percent >= lastShown + 25 || done === total) {
        lastShown = percent;
        process.stderr.write(`sample: ${done}/${total} tables\n`);
      }
    },
  });
  const seconds = (performance.now() - started) / 1000;
  process.stdout.write(
    `sample: wrote ${built.path}: ${built.tables} tables, ${built.rows} rows, ${formatBytes(built.bytes)} (${built.bytes} bytes), ${seconds.toFixed(1)}s\n`,
  );
} catch (err) {
  if (tty) process.stderr.write("\n");
  process.stderr.write(`sample: failed: ${(err as Error).message}\n`);
  process.exitCode = 1;
}
