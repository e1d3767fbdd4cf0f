// Reads a training file back the way its users will, and checks it against the warehouse it was
// built from: DuckDB (rows, the key unique and strictly increasing in file order, the rows the
// target table defines) and polars (the same cells), cells sampled from the first, a middle and the
// last row group compared with the warehouse's own left join, and chunk offsets beyond 4 GiB.
// Used by `npm run bench:pair -- --check`.
import { DuckDBInstance, type JS } from "@duckdb/node-api";
import pl from "nodejs-polars";
import { DEFAULT_FEATURES_DATASET, DEFAULT_TARGETS_DATASET, KEY_COLUMN } from "../../src/constants.ts";
import { planTables } from "../../src/discovery.ts";
import { planPart, readRawFooter, summarizeFooter } from "../../src/parquet/index.ts";
import { DuckDBWarehouse } from "../../src/warehouse/duckdb.ts";

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
const SAMPLED_COLUMNS = 40;
const ROWS_PER_GROUP_SAMPLED = 3;

/** A cell selected as CAST(... AS VARCHAR): its text, or null. */
function varchar(v: JS | undefined): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== "string") throw new Error(`expected a VARCHAR cell, got ${typeof v}`);
  return v;
}

export interface FileCheck {
  rows: number;
  targetRows: number;
  keyUnique: boolean;
  keyStrictlyIncreasing: boolean;
  polarsRows: number;
  rowGroups: number;
  maxChunkOffset: number;
  offsetsBeyond4GiB: boolean;
  sampledCells: number;
  mismatches: string[];
  ok: boolean;
}

export async function checkTrainingFile(opts: { file: string; warehouse: string; pair: string }): Promise<FileCheck> {
  const raw = await readRawFooter(opts.file);
  const footer = summarizeFooter(raw.thrift, raw.fileBytes);
  const plan = planPart(raw.thrift, opts.file);
  let maxChunkOffset = 0;
  for (let i = 0; i < plan.chunkStart.length; i++) maxChunkOffset = Math.max(maxChunkOffset, plan.chunkStart[i]!);

  const wh = await DuckDBWarehouse.open(opts.warehouse);
  const discovery = planTables(
    opts.pair,
    { dataset: DEFAULT_FEATURES_DATASET, tables: await wh.listTables(DEFAULT_FEATURES_DATASET) },
    { dataset: DEFAULT_TARGETS_DATASET, tables: await wh.listTables(DEFAULT_TARGETS_DATASET) },
    wh.keyTypes,
  );
  await wh.close();
  const source = new Map<string, { dataset: string; table: string; column: string }>();
  for (const t of [discovery.target, ...discovery.features]) for (const c of t.columns) source.set(c.target, { dataset: t.dataset, table: t.table, column: c.source });

  const instance = await DuckDBInstance.create(":memory:", { threads: "2", memory_limit: "2GB" });
  const c = await instance.connect();
  const mismatches: string[] = [];
  let sampledCells = 0;
  try {
    await c.run("SET TimeZone = 'UTC'");
    await c.run(`ATTACH '${opts.warehouse.replaceAll("'", "''")}' AS wh (READ_ONLY)`);
    const file = `read_parquet('${opts.file.replaceAll("'", "''")}', file_row_number = true)`;
    const counts = (await c.runAndReadAll(`SELECT count(*)::BIGINT AS n, count(DISTINCT ${q(KEY_COLUMN)})::BIGINT AS d FROM ${file}`)).getRowObjectsJS()[0]!;
    const backwards = (await c.runAndReadAll(`SELECT count(*)::BIGINT AS n FROM (SELECT ${q(KEY_COLUMN)} AS k, lag(${q(KEY_COLUMN)}) OVER (ORDER BY file_row_number) AS prev FROM ${file}) WHERE prev >= k`)).getRowObjectsJS()[0]!;
    const target = discovery.target;
    const targetRows = (await c.runAndReadAll(`SELECT count(*)::BIGINT AS n FROM wh.${q(target.dataset)}.${q(target.table)} WHERE target_bqx45_h15 IS NOT NULL AND ${q(KEY_COLUMN)} >= '2020-01-01' AND ${q(KEY_COLUMN)} < '2025-01-01'`)).getRowObjectsJS()[0]!;

    // Rows of the first, a middle and the last row group; columns spread over the whole width.
    const groups = footer.rowGroups;
    const starts: number[] = [];
    let at = 0;
    for (const g of groups) {
      starts.push(at);
      at += g.numRows;
    }
    const pickGroups = [...new Set([0, Math.floor(groups.length / 2), groups.length - 1])];
    const sampleRows = pickGroups.flatMap((g) => Array.from({ length: ROWS_PER_GROUP_SAMPLED }, (_, i) => starts[g]! + Math.floor((i * groups[g]!.numRows) / ROWS_PER_GROUP_SAMPLED)));
    const names = footer.columnNames.filter((n) => n !== KEY_COLUMN);
    const columns = Array.from({ length: SAMPLED_COLUMNS }, (_, i) => names[Math.floor((i * names.length) / SAMPLED_COLUMNS)]!);
    const select = [KEY_COLUMN, ...columns].map((n) => `CAST(${q(n)} AS VARCHAR) AS ${q(n)}`).join(", ");
    const fromDuck = (await c.runAndReadAll(`SELECT file_row_number, ${select} FROM ${file} WHERE file_row_number IN (${sampleRows.join(", ")}) ORDER BY file_row_number`)).getRowObjectsJS();
    const lazy = pl.scanParquet(opts.file);
    for (const row of fromDuck) {
      const r = Number(row.file_row_number);
      const fromPolars = (await lazy.slice(r, 1).select(KEY_COLUMN, ...columns).collect()).toRecords()[0]!;
      const key = varchar(row[KEY_COLUMN]);
      if (key === null) throw new Error(`row ${r} of ${opts.file} has no ${KEY_COLUMN}`);
      for (const name of columns) {
        const s = source.get(name)!;
        const expected = varchar((await c.runAndReadAll(`SELECT CAST(${q(s.column)} AS VARCHAR) AS v FROM wh.${q(s.dataset)}.${q(s.table)} WHERE ${q(KEY_COLUMN)} = CAST('${key}' AS TIMESTAMPTZ)`)).getRowObjectsJS()[0]?.v);
        const inFile = varchar(row[name]);
        const polarsValue = fromPolars[name];
        sampledCells += 1;
        if (String(inFile) !== String(expected)) mismatches.push(`${name} at row ${r}: file ${inFile}, warehouse ${expected}`);
        if ((polarsValue === null ? null : Number(polarsValue)) !== (inFile === null ? null : Number(inFile))) mismatches.push(`${name} at row ${r}: polars ${polarsValue}, DuckDB ${inFile}`);
      }
    }
    const polarsRows = Number((await lazy.select(pl.col(KEY_COLUMN).count().alias("n")).collect()).getColumn("n").get(0));
    const result: FileCheck = {
      rows: Number(counts.n),
      targetRows: Number(targetRows.n),
      keyUnique: counts.n === counts.d,
      keyStrictlyIncreasing: Number(backwards.n) === 0,
      polarsRows,
      rowGroups: groups.length,
      maxChunkOffset,
      offsetsBeyond4GiB: maxChunkOffset > 2 ** 32,
      sampledCells,
      mismatches: mismatches.slice(0, 20),
      ok: false,
    };
    result.ok = result.rows === result.targetRows && result.keyUnique && result.keyStrictlyIncreasing && result.polarsRows === result.rows && mismatches.length === 0;
    return result;
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}
