// alignCheckpoint + stitchParquetColumns: checkpoints aligned on the target's rows with fixed
// row-group boundaries, stitched side by side without decoding, must equal polars' chain of
// left joins, value by value.
import { mkdir, mkdtemp, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import type { DuckDBConnection } from "@duckdb/node-api";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { alignCheckpoint, readKeys, rowGroupSizes } from "../../src/merge/align.ts";
import { readColumn, readFooter, readFooterSummary } from "../../src/parquet/footer.ts";
import { stitchParquetColumns } from "../../src/parquet/stitch.ts";
import { generateCheckpoints, rng } from "../support/checkpoints.ts";

const KEY = "interval_time";
const KEY_DTYPE = pl.Datetime("us", "UTC");
const BASE_US = 1_704_067_200_000_000n; // 2024-01-01T00:00:00Z
const ROWS = 23_457;
const RG = 2_000;

let dir = "";
let duck: DuckDBConnection;

/** Key of minute m, with sub-millisecond parts and gaps (every 13th minute is absent). */
function minuteKey(m: number): bigint {
  return BASE_US + BigInt(m) * 60_000_000n + BigInt(m % 997);
}

function keySeries(keys: bigint[]): pl.Series {
  return pl.Series(KEY, BigInt64Array.from(keys) as unknown as number[]).cast(KEY_DTYPE);
}

function frame(keys: bigint[], prefix: string, columns: number, nullRate: number, seed: number, allNull = -1): pl.DataFrame {
  const random = rng(seed);
  const series = [keySeries(keys)];
  for (let c = 0; c < columns; c++) {
    const values = keys.map(() => (c === allNull || random() < nullRate ? null : random() * 200 - 100));
    series.push(pl.Series(`${prefix}_c${c}`, values, pl.Float64));
  }
  return pl.DataFrame(series);
}

async function write(df: pl.DataFrame, file: string, rowGroupSize = 5_000): Promise<string> {
  await df.lazy().sinkParquet(file, { compression: "zstd", compressionLevel: 1, statistics: true, rowGroupSize }).collect();
  return file;
}

function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

async function tmpLeftovers(d: string): Promise<string[]> {
  return (await readdir(d, { recursive: true })).filter((f) => String(f).endsWith(".tmp"));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stitch-"));
  duck = await (await DuckDBInstance.create(":memory:")).connect();
});

afterAll(async () => {
  duck?.closeSync();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("alignCheckpoint + stitchParquetColumns", () => {
  const sources: { table: string; path: string }[] = [];
  let targetKeys: bigint[] = [];
  const aligned: string[] = [];
  let out = "";
  let expected: pl.DataFrame;

  beforeAll(async () => {
    const minutes: number[] = [];
    for (let m = 0; minutes.length < ROWS; m++) if (m % 13 !== 5) minutes.push(m);
    targetKeys = minutes.map(minuteKey);
    const src = join(dir, "src");
    await mkdir(src, { recursive: true });
    const target = frame(targetKeys, "target", 3, 0, 1);
    sources.push({ table: "target", path: await write(target, join(src, "target.parquet"), 10_000) });

    // a: one column, every key.
    const a = frame(targetKeys, "a", 1, 0.05, 2);
    // b: 40 columns, misses the first 100 keys, 10 % nulls.
    const b = frame(targetKeys.slice(100), "b", 40, 0.1, 3);
    // c: 7 columns, no row at all in target rows [5000, 9000) (whole row groups), plus keys
    //    the target does not have (every minute, gaps included) that the join must drop.
    const cMinutes: number[] = [];
    for (let m = 0; m <= (minutes.at(-1) ?? 0) + 50; m++) cMinutes.push(m);
    const lo = minuteKey(minutes[5000] ?? 0);
    const hi = minuteKey(minutes[9000] ?? 0);
    const cKeys = cMinutes.map(minuteKey).filter((k) => k < lo || k >= hi);
    const c = frame(cKeys, "c", 7, 0.2, 4);
    // d: 120 columns, rows in shuffled order.
    const dKeys = [...targetKeys];
    const shuffle = rng(5);
    for (let i = dKeys.length - 1; i > 0; i--) {
      const j = Math.floor(shuffle() * (i + 1));
      [dKeys[i], dKeys[j]] = [dKeys[j] as bigint, dKeys[i] as bigint];
    }
    const d = frame(dKeys, "d", 120, 0.02, 6);
    // e: 15 columns, one of them entirely null, misses the last 777 keys.
    const e = frame(targetKeys.slice(0, ROWS - 777), "e", 15, 0.3, 7, 4);
    for (const [table, df] of Object.entries({ a, b, c, d, e })) {
      sources.push({ table, path: await write(df, join(src, `${table}.parquet`)) });
    }

    expected = pl.readParquet(sources[0]?.path ?? "");
    for (const s of sources.slice(1)) {
      expected = expected.join(pl.readParquet(s.path), { on: KEY, how: "left", maintainOrder: "left" });
    }

    const keys = readKeys(sources[0]?.path ?? "");
    expect(keys.length).toBe(ROWS);
    for (const [i, s] of sources.entries()) {
      const file = join(dir, "aligned", `${s.table}.parquet`);
      const res = await alignCheckpoint({ keys, source: s.path, outPath: file, rowGroupRows: RG, table: s.table, omitKey: i > 0 });
      expect(res.rows).toBe(ROWS);
      expect(res.rewritten).toBe(false); // polars' rowGroupSize is exact (the fallback is not needed)
      aligned.push(file);
    }
    out = join(dir, "stitched.parquet");
  });

  it("aligned files share the target's rows and row-group boundaries", async () => {
    const want = rowGroupSizes(ROWS, RG);
    expect(want.at(-1)).toBe(ROWS % RG);
    for (const [i, f] of aligned.entries()) {
      const s = await readFooterSummary(f);
      expect(s.rowGroups.map((g) => g.numRows), f).toEqual(want);
      expect(s.columnNames.includes(KEY), f).toBe(i === 0);
    }
    // c has no row for target rows [5000, 9000): all null there, row group 3 (6000-7999) wholly
    const c = pl.readParquet(aligned[3] ?? "");
    expect(c.slice(5000, 4000).getColumn("c_c0").nullCount()).toBe(4000);
    const cFooter = await readFooter(aligned[3] ?? "");
    expect(cFooter.row_groups[3]?.columns.map((col) => col.meta_data?.statistics?.null_count)).toEqual(new Array(7).fill(2000n));
  });

  it("the slice fallback writes the same rows and boundaries", async () => {
    const keys = readKeys(sources[0]?.path ?? "");
    const file = join(dir, "slices", "b.parquet");
    const res = await alignCheckpoint({ keys, source: sources[2]?.path ?? "", outPath: file, rowGroupRows: RG, table: "b", omitKey: true, rowGroups: "slices" });
    expect(res.rewritten).toBe(true);
    expect((await readFooterSummary(file)).rowGroups.map((g) => g.numRows)).toEqual(rowGroupSizes(ROWS, RG));
    expect(pl.readParquet(file).frameEqual(pl.readParquet(aligned[2] ?? ""), true)).toBe(true);
    expect(await tmpLeftovers(dir)).toEqual([]);
    expect(await readdir(join(dir, "slices"))).toEqual(["b.parquet"]);
  });

  it("aligning in slices of whole row groups reads each slice's key range and gives the same file content", async () => {
    const keys = readKeys(sources[0]?.path ?? "");
    for (const [i, sliceRows] of [RG, 3 * RG].entries()) {
      const file = join(dir, "sliced", `b-${i}.parquet`);
      const res = await alignCheckpoint({ keys, source: sources[2]?.path ?? "", outPath: file, rowGroupRows: RG, table: "b", omitKey: true, sliceRows });
      expect(res.rows).toBe(ROWS);
      expect((await readFooterSummary(file)).rowGroups.map((g) => g.numRows)).toEqual(rowGroupSizes(ROWS, RG));
      expect(pl.readParquet(file).frameEqual(pl.readParquet(aligned[2] ?? ""), true)).toBe(true);
    }
    expect(await readdir(join(dir, "sliced"))).toEqual(["b-0.parquet", "b-1.parquet"]);
    await expect(alignCheckpoint({ keys, source: sources[2]?.path ?? "", outPath: join(dir, "sliced", "bad.parquet"), rowGroupRows: RG, table: "b", sliceRows: RG + 1 })).rejects.toThrow(
      /sliceRows 2001 must be a positive multiple of rowGroupRows 2000/,
    );
    expect(await tmpLeftovers(dir)).toEqual([]);
  });

  it("stitches into a file equal to the chain of left joins", async () => {
    const progress: [number, number][] = [];
    const res = await stitchParquetColumns(aligned, out, {
      keyValueMetadata: { "bqx:pair": "eurusd" },
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(res).toEqual({ rows: ROWS, rowGroups: Math.ceil(ROWS / RG), columns: expected.width, bytes: (await stat(out)).size });
    expect(progress.at(-1)?.[0]).toBe(progress.at(-1)?.[1]);
    expect(await tmpLeftovers(dir)).toEqual([]);

    const got = pl.readParquet(out);
    expect(got.columns).toEqual(expected.columns);
    expect(got.dtypes.map(String)).toEqual(expected.dtypes.map(String));
    expect(got.frameEqual(expected, true)).toBe(true);
    // exact µs keys
    expect(got.getColumn(KEY).cast(pl.Int64).toTypedArray()).toEqual(BigInt64Array.from(targetKeys));
  });

  it("DuckDB reads the same rows as its own left joins of the checkpoints", async () => {
    const names = expected.columns.filter((c) => c !== KEY);
    const joins = sources
      .slice(1)
      .map((s, i) => `LEFT JOIN read_parquet(${sqlString(s.path)}) t${i + 1} USING (${KEY})`)
      .join(" ");
    const sql = `
      WITH o AS (SELECT * FROM read_parquet(${sqlString(out)})),
           e AS (SELECT t0.${KEY}, ${names.map((n) => `"${n}"`).join(", ")} FROM read_parquet(${sqlString(sources[0]?.path ?? "")}) t0 ${joins})
      SELECT (SELECT count(*) FROM o), (SELECT count(*) FROM e),
             (SELECT count(*) FROM (SELECT * FROM o EXCEPT ALL SELECT * FROM e)),
             (SELECT count(*) FROM (SELECT * FROM e EXCEPT ALL SELECT * FROM o))`;
    const row = (await duck.runAndReadAll(sql)).getRowsJS()[0] ?? [];
    expect(row.map(Number)).toEqual([ROWS, ROWS, 0, 0]);
    const rgs = await duck.runAndReadAll(
      `SELECT row_group_id, any_value(row_group_num_rows), count(*) FROM parquet_metadata(${sqlString(out)}) GROUP BY 1 ORDER BY 1`,
    );
    expect(rgs.getRowsJS().map((r) => [Number(r[1]), Number(r[2])])).toEqual(rowGroupSizes(ROWS, RG).map((n) => [n, expected.width]));
    // key order as DuckDB reads the file
    const keys = await duck.runAndReadAll(
      `SELECT CAST(epoch_us(${KEY}) AS VARCHAR) FROM read_parquet(${sqlString(out)}, file_row_number = true) ORDER BY file_row_number`,
    );
    expect(keys.getRowsJS().map((r) => r[0])).toEqual(targetKeys.map(String));
  });

  it("footer: column order, null counts, statistics, offsets, metadata", async () => {
    const s = await readFooterSummary(out);
    expect(s.columnNames).toEqual(expected.columns);
    expect(s.rowGroups.map((g) => g.numRows)).toEqual(rowGroupSizes(ROWS, RG));
    for (const name of expected.columns) {
      expect(s.nullCounts.get(name), name).toBe(expected.getColumn(name).nullCount());
    }
    expect(s.nullCounts.get("e_c4")).toBe(ROWS);
    expect(s.keyValueMetadata["bqx:pair"]).toBe("eurusd");
    expect(s.keyValueMetadata["ARROW:schema"]).toBeUndefined();

    // Full hyparquet parse: offsets inside the data area, no page indexes, ordinals, sizes.
    const footer = await readFooter(out);
    for (const [g, rg] of footer.row_groups.entries()) {
      expect(rg.ordinal).toBe(g);
      let compressed = 0n;
      let lastEnd = 0n;
      for (const c of rg.columns) {
        const m = c.meta_data;
        expect(c.column_index_offset).toBeUndefined();
        expect(c.offset_index_offset).toBeUndefined();
        const start = m?.dictionary_page_offset ?? m?.data_page_offset ?? 0n;
        expect(start).toBeGreaterThanOrEqual(4n);
        expect(start + (m?.total_compressed_size ?? 0n)).toBeLessThanOrEqual(BigInt(footer.fileBytes - footer.footerBytes - 8));
        expect(start).toBeGreaterThanOrEqual(lastEnd); // chunks laid out in order, no overlap
        lastEnd = start + (m?.total_compressed_size ?? 0n);
        compressed += m?.total_compressed_size ?? 0n;
      }
      expect(rg.total_compressed_size).toBe(compressed);
      expect(rg.file_offset).toBe(rg.columns[0]?.meta_data?.data_page_offset);
    }
    // statistics survive byte for byte: key min/max per row group equal the aligned target's
    const t = await readFooter(aligned[0] ?? "");
    expect(footer.row_groups.map((rg) => rg.columns[0]?.meta_data?.statistics)).toEqual(
      t.row_groups.map((rg) => rg.columns[0]?.meta_data?.statistics),
    );

    // hyparquet decodes a stitched column row group by row group
    const values: unknown[] = [];
    await readColumn(out, "d_c119", (v) => {
      values.push(...Array.from(v));
    });
    expect(values).toEqual(expected.getColumn("d_c119").toArray());
  });

  it("rejects mismatched row-group boundaries, naming the file and row group", async () => {
    const keys = readKeys(sources[0]?.path ?? "");
    const odd = join(dir, "odd", "b.parquet");
    await alignCheckpoint({ keys, source: sources[2]?.path ?? "", outPath: odd, rowGroupRows: 3_000, table: "b", omitKey: true });
    const bad = join(dir, "bad.parquet");
    await expect(stitchParquetColumns([aligned[0] ?? "", aligned[1] ?? "", odd], bad)).rejects.toThrow(
      /row groups differ: .*odd\/b\.parquet \(file 2\) row group 0 has 3000 rows, .*target\.parquet \(file 0\) has 2000 rows/,
    );
    // fewer rows (a shorter target) is also caught
    const short = join(dir, "short", "a.parquet");
    await alignCheckpoint({ keys: keys.subarray(0, ROWS - 10), source: sources[1]?.path ?? "", outPath: short, rowGroupRows: RG, table: "a", omitKey: true });
    await expect(stitchParquetColumns([aligned[0] ?? "", short], bad)).rejects.toThrow(/row group 11 has 1447 rows/);
    await expect(stat(bad)).rejects.toThrow();
    expect(await tmpLeftovers(dir)).toEqual([]);
  });

  it("rejects a duplicate output column name, naming both files", async () => {
    const bad = join(dir, "dup.parquet");
    // the key column appears in every file when nothing drops it
    const withKey = join(dir, "withkey", "a.parquet");
    await alignCheckpoint({ keys: readKeys(sources[0]?.path ?? ""), source: sources[1]?.path ?? "", outPath: withKey, rowGroupRows: RG, table: "a" });
    await expect(stitchParquetColumns([aligned[0] ?? "", withKey], bad)).rejects.toThrow(
      /duplicate column "interval_time": in .*target\.parquet \(file 0\) and .*withkey\/a\.parquet \(file 1\)/,
    );
    await expect(stitchParquetColumns([aligned[0] ?? "", aligned[1] ?? "", aligned[1] ?? ""], bad)).rejects.toThrow(/duplicate column "a_c0"/);
    await expect(stat(bad)).rejects.toThrow();
    expect(await tmpLeftovers(dir)).toEqual([]);

    // dropColumns resolves it: the key is taken from file 0 only
    const ok = join(dir, "dropkey.parquet");
    const res = await stitchParquetColumns([aligned[0] ?? "", withKey], ok, { dropColumns: (i, name) => i > 0 && name === KEY });
    expect(res.columns).toBe(1 + 3 + 1);
    const got = pl.readParquet(ok);
    expect(got.frameEqual(expected.select(KEY, "target_c0", "target_c1", "target_c2", "a_c0"), true)).toBe(true);
  });

  it("alignCheckpoint rejects duplicated keys, naming the table, and leaves no file", async () => {
    const keys = readKeys(sources[0]?.path ?? "");
    const dupKeys = [...targetKeys.slice(0, 100), targetKeys[50] as bigint];
    const dup = await write(frame(dupKeys, "dup", 2, 0, 9), join(dir, "src", "dup.parquet"));
    const outPath = join(dir, "aligned-dup", "dup.parquet");
    await expect(alignCheckpoint({ keys, source: dup, outPath, rowGroupRows: RG, table: "dup_table" })).rejects.toThrow(
      /dup_table repeats interval_time values/,
    );
    await expect(stat(outPath)).rejects.toThrow();
    expect(await tmpLeftovers(dir)).toEqual([]);
    // a key type other than Datetime(us, UTC) is refused
    const ns = await write(frame(targetKeys.slice(0, 10), "ns", 1, 0, 9).withColumn(pl.col(KEY).cast(pl.Datetime("ns", "UTC"))), join(dir, "src", "ns.parquet"));
    await expect(alignCheckpoint({ keys, source: ns, outPath, rowGroupRows: RG, table: "ns_table" })).rejects.toThrow(/ns_table: interval_time has type/);
  });
});

describe("stitchParquetColumns, wide", () => {
  it("2,000 columns over 20 files", async () => {
    const started = performance.now();
    const wide = join(dir, "wide");
    const rows = 12_000;
    const { target, features } = await generateCheckpoints({ dir: join(wide, "src"), rows, files: 20, columnsPerFile: 100, seed: 7 });
    const keys = readKeys(target);
    const files: string[] = [];
    for (const [i, f] of [target, ...features].entries()) {
      const file = join(wide, "aligned", `${i}.parquet`);
      await alignCheckpoint({ keys, source: f, outPath: file, rowGroupRows: 1_000, table: `t${i}`, omitKey: i > 0 });
      files.push(file);
    }
    const out = join(wide, "out.parquet");
    const res = await stitchParquetColumns(files, out);
    let expected = pl.readParquet(target);
    for (const f of features) expected = expected.join(pl.readParquet(f), { on: KEY, how: "left", maintainOrder: "left" });
    expect(res).toMatchObject({ rows, rowGroups: 12, columns: 1 + 49 + 2_000 });
    const got = pl.readParquet(out);
    expect(got.columns).toEqual(expected.columns);
    expect(got.frameEqual(expected, true)).toBe(true);
    const s = await readFooterSummary(out);
    let nulls = 0;
    for (const name of expected.columns) {
      const n = expected.getColumn(name).nullCount();
      nulls += n;
      expect(s.nullCounts.get(name), name).toBe(n);
    }
    expect(nulls).toBeGreaterThan(0);
    expect(await tmpLeftovers(wide)).toEqual([]);
    expect(performance.now() - started).toBeLessThan(30_000);
  });
});
