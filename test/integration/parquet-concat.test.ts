import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import type { DuckDBConnection } from "@duckdb/node-api";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { concatParquetFiles } from "../../src/parquet/concat.ts";
import { readColumn, readFooter, readFooterSummary } from "../../src/parquet/footer.ts";

const BASE_US = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z in µs

let dir = "";
let duck: DuckDBConnection;

function keyMicros(m: number): number {
  return BASE_US + m * 60_000_000 + (m % 997); // sub-millisecond parts on purpose
}

function bigValue(m: number): string | null {
  if (m % 7 === 3) return null;
  const v = 2n ** 60n + BigInt(m) * 1_000_003n;
  return (m % 2 === 0 ? v : -v).toString();
}

/** One part: rows [start, start + n) of the global sequence. */
function makePart(start: number, n: number, part: number): pl.DataFrame {
  const ms = Array.from({ length: n }, (_, i) => start + i);
  return pl.DataFrame([
    pl.Series("interval_time", ms.map(keyMicros), pl.Int64).cast(pl.Datetime("us", "UTC")),
    pl.Series("f_a", ms.map((m) => (m % 5 === 0 ? null : m * 0.1 + Math.PI)), pl.Float64),
    pl.Series("f_b", ms.map((m) => (part === 1 || m % 3 !== 0 ? Math.sqrt(m) - 17.25 : null)), pl.Float64),
    pl.Series("all_null", ms.map(() => null), pl.Float64),
    pl.Series("big", ms.map(bigValue), pl.Utf8).cast(pl.Int64),
    pl.Series("pair", ms.map((m) => ["eurusd", "gbpusd", "usdjpy"][m % 3] ?? ""), pl.Utf8),
    pl.Series("label", ms.map((m) => (m % 11 === 0 ? null : `row-${m}-${"x".repeat(m % 13)}`)), pl.Utf8),
    pl.Series("i32", ms.map((m) => (m * 7919) % 100_003), pl.Int32),
  ]);
}

/** Values of a column that compare exactly (64-bit integers and timestamps as strings). */
function exactValues(df: pl.DataFrame, name: string): unknown[] {
  const s = df.getColumn(name);
  if (s.dtype.equals(pl.Int64)) return s.cast(pl.Utf8).toArray();
  if (s.dtype.equals(pl.Datetime("us", "UTC"))) return s.cast(pl.Int64).cast(pl.Utf8).toArray();
  return s.toArray();
}

function expectSameFrames(got: pl.DataFrame, expected: pl.DataFrame): void {
  expect(got.columns).toEqual(expected.columns);
  expect(got.height).toBe(expected.height);
  expect(got.dtypes.map(String)).toEqual(expected.dtypes.map(String));
  for (const name of expected.columns) {
    expect(exactValues(got, name), name).toEqual(exactValues(expected, name));
  }
  expect(got.frameEqual(expected, true)).toBe(true);
}

function sqlString(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}

/**
 * DuckDB, independently: the output row at position r equals the row of the parts'
 * vertical concatenation at position r, for every column.
 */
async function duckMismatches(out: string, parts: string[], columns: string[]): Promise<{ out: number; parts: number; mismatches: number }> {
  const counts: number[] = [];
  for (const p of parts) {
    const r = await duck.runAndReadAll(`SELECT count(*) FROM read_parquet(${sqlString(p)})`);
    counts.push(Number(r.getRowsJS()[0]?.[0]));
  }
  let acc = 0;
  const cases = parts.map((p, i) => {
    const c = `WHEN ${sqlString(p)} THEN ${acc}`;
    acc += counts[i] ?? 0;
    return c;
  });
  const cols = columns.map((c) => `"${c}"`);
  const sql = `
    WITH o AS (
      SELECT ${cols.join(", ")}, file_row_number AS rn FROM read_parquet(${sqlString(out)}, file_row_number = true)
    ), p AS (
      SELECT ${cols.join(", ")}, file_row_number + CASE filename ${cases.join(" ")} END AS rn
      FROM read_parquet([${parts.map(sqlString).join(", ")}], filename = true, file_row_number = true)
    )
    SELECT
      (SELECT count(*) FROM o),
      (SELECT count(*) FROM p),
      (SELECT count(*) FROM o FULL OUTER JOIN p USING (rn)
        WHERE o.rn IS NULL OR p.rn IS NULL OR ${columns.map((c) => `o."${c}" IS DISTINCT FROM p."${c}"`).join(" OR ")})`;
  const row = (await duck.runAndReadAll(sql)).getRowsJS()[0] ?? [];
  return { out: Number(row[0]), parts: Number(row[1]), mismatches: Number(row[2]) };
}

async function leftovers(): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith(".tmp"));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "parquet-concat-"));
  duck = await (await DuckDBInstance.create(":memory:")).connect();
});

afterAll(async () => {
  duck?.closeSync();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("concatParquetFiles", () => {
  const parts: string[] = [];
  const frames: pl.DataFrame[] = [];
  let out = "";

  beforeAll(async () => {
    const specs = [
      { n: 1_500, how: "write" as const },
      { n: 1_300, how: "sink" as const, rowGroupSize: 400, compression: "zstd" as const },
      { n: 1_000, how: "sink" as const, rowGroupSize: 500, compression: "snappy" as const },
      { n: 777, how: "sink" as const, rowGroupSize: 250, compression: "uncompressed" as const },
    ];
    let start = 0;
    for (const [i, spec] of specs.entries()) {
      const df = makePart(start, spec.n, i);
      start += spec.n;
      const path = join(dir, `part-${i}.parquet`);
      if (spec.how === "write") df.writeParquet(path, { compression: "zstd" });
      else await df.lazy().sinkParquet(path, { rowGroupSize: spec.rowGroupSize, compression: spec.compression }).collect();
      parts.push(path);
      frames.push(df);
    }
    out = join(dir, "merged.parquet");
  });

  it("generated parts exercise several row groups, dictionary pages and page indexes", async () => {
    const footers = await Promise.all(parts.map((p) => readFooter(p)));
    expect(footers.map((f) => f.rowGroups.length)).toEqual([1, 4, 2, 4]);
    const pairChunks = footers.flatMap((f) => f.row_groups.map((rg) => rg.columns[5]?.meta_data));
    expect(pairChunks.every((m) => m?.path_in_schema[0] === "pair" && m.dictionary_page_offset !== undefined)).toBe(true);
    // polars writes page indexes (column index + offset index) by default
    expect(footers.every((f) => f.row_groups.every((rg) => rg.columns.every((c) => c.column_index_offset !== undefined)))).toBe(true);
  });

  it("concatenates parts into one file equal to their vertical concatenation", async () => {
    const progress: [number, number][] = [];
    const res = await concatParquetFiles(parts, out, {
      keyValueMetadata: { "bqx:pair": "eurusd" },
      onProgress: (done, total) => progress.push([done, total]),
    });
    const expected = pl.concat(frames);
    expect(res.rows).toBe(expected.height);
    expect(res.rowGroups).toBe(11);
    expect(res.bytes).toBe((await stat(out)).size);
    expect(await leftovers()).toEqual([]);
    expect(progress[0]?.[0]).toBe(0);
    expect(progress.at(-1)?.[0]).toBe(progress.at(-1)?.[1]);

    // nodejs-polars, value by value (including exact µs keys and Int64 beyond 2^53)
    expectSameFrames(pl.readParquet(out), expected);
    expectSameFrames(pl.readParquet(out), pl.concat(parts.map((p) => pl.readParquet(p))));

    // DuckDB, independently, row by row in order
    const cmp = await duckMismatches(out, parts, expected.columns);
    expect(cmp).toEqual({ out: expected.height, parts: expected.height, mismatches: 0 });
    const duckKey = await duck.runAndReadAll(
      `SELECT CAST(epoch_us(interval_time) AS VARCHAR), CAST(big AS VARCHAR) FROM read_parquet(${sqlString(out)}, file_row_number = true) ORDER BY file_row_number`,
    );
    const rows = duckKey.getRowsJS();
    expect(rows.map((r) => r[0])).toEqual(exactValues(expected, "interval_time"));
    expect(rows.map((r) => r[1])).toEqual(exactValues(expected, "big"));
    const rgs = await duck.runAndReadAll(`SELECT count(DISTINCT row_group_id) FROM parquet_metadata(${sqlString(out)})`);
    expect(Number(rgs.getRowsJS()[0]?.[0])).toBe(11);
  });

  it("keeps statistics (null counts), drops page indexes, merges key/value metadata", async () => {
    const expected = pl.concat(frames);
    const footer = await readFooter(out);
    expect(footer.numRows).toBe(expected.height);
    expect(footer.rowGroups.map((g) => g.numRows)).toEqual([1500, 400, 400, 400, 100, 500, 500, 250, 250, 250, 27]);
    for (const name of expected.columns) {
      expect(footer.nullCounts.get(name), name).toBe(expected.getColumn(name).nullCount());
    }
    expect(footer.nullCounts.get("all_null")).toBe(expected.height);
    expect(footer.keyValueMetadata["bqx:pair"]).toBe("eurusd");
    expect(footer.keyValueMetadata["ARROW:schema"]).toBe((await readFooter(parts[0] ?? "")).keyValueMetadata["ARROW:schema"]);
    for (const rg of footer.row_groups) {
      for (const c of rg.columns) {
        expect(c.column_index_offset).toBeUndefined();
        expect(c.offset_index_offset).toBeUndefined();
      }
    }
    // statistics survive byte for byte: key min/max per row group, ordinals renumbered
    const partFooters = await Promise.all(parts.map((p) => readFooter(p)));
    const partStats = partFooters.flatMap((f) => f.row_groups.map((rg) => rg.columns[0]?.meta_data?.statistics));
    expect(footer.row_groups.map((rg) => rg.columns[0]?.meta_data?.statistics)).toEqual(partStats);
    expect(footer.row_groups.map((rg) => rg.ordinal)).toEqual(footer.row_groups.map((_, i) => i));
    // every page offset points inside the new file's data area
    for (const rg of footer.row_groups) {
      for (const c of rg.columns) {
        const m = c.meta_data;
        const start = Number(m?.dictionary_page_offset ?? m?.data_page_offset);
        expect(start).toBeGreaterThanOrEqual(4);
        expect(start + Number(m?.total_compressed_size)).toBeLessThanOrEqual(footer.fileBytes - footer.footerBytes - 8);
      }
    }
  });

  it("streams the key of the merged file exactly (bigint µs) with readColumn", async () => {
    const expected = exactValues(pl.concat(frames), "interval_time");
    const got: string[] = [];
    const sizes: number[] = [];
    const res = await readColumn(out, "interval_time", (v) => {
      sizes.push(v.length);
      for (let i = 0; i < v.length; i++) {
        expect(typeof v[i]).toBe("bigint");
        got.push(String(v[i]));
      }
    });
    expect(res.rowGroups).toBe(11);
    expect(sizes).toEqual([1500, 400, 400, 400, 100, 500, 500, 250, 250, 250, 27]);
    expect(got).toEqual(expected);
  });

  it("can concatenate its own output again; options win over the parts' metadata", async () => {
    const again = join(dir, "again.parquet");
    const res = await concatParquetFiles([out, parts[3] ?? "", out], again, { keyValueMetadata: { "bqx:pair": "gbpusd" } });
    expect(res.rowGroups).toBe(11 + 4 + 11);
    const expected = pl.concat([...frames, frames[3] as pl.DataFrame, ...frames]);
    expectSameFrames(pl.readParquet(again), expected);
    const footer = await readFooterSummary(again);
    expect(footer.keyValueMetadata["bqx:pair"]).toBe("gbpusd");
    expect(footer.nullCounts.get("f_b")).toBe(expected.getColumn("f_b").nullCount());
    const duckCount = await duck.runAndReadAll(`SELECT count(*), count(DISTINCT interval_time) FROM read_parquet(${sqlString(again)})`);
    expect(duckCount.getRowsJS()[0]?.map(Number)).toEqual([expected.height, 1_500 + 1_300 + 1_000 + 777]);
  });

  it("rejects a part whose schema differs, naming the part and the column; leaves no .tmp", async () => {
    const base = makePart(0, 50, 0);
    const cases: [string, pl.DataFrame, RegExp][] = [
      ["float32", base.withColumns(pl.col("f_b").cast(pl.Float32)), /part 2 .*float32\.parquet.*column "f_b".*physical type FLOAT vs DOUBLE/],
      ["renamed", base.rename({ label: "lbl" }), /part 2 .*renamed\.parquet.*column "lbl".*name lbl vs label/],
      ["ns", base.withColumns(pl.col("interval_time").cast(pl.Datetime("ns", "UTC"))), /part 2 .*ns\.parquet.*column "interval_time".*logical type TIMESTAMP\(NANOS, isAdjustedToUTC=true\) vs TIMESTAMP\(MICROS/],
      ["naive", base.withColumns(pl.col("interval_time").cast(pl.Datetime("us"))), /part 2 .*naive\.parquet.*column "interval_time".*isAdjustedToUTC=false/],
      ["extra", base.withColumns(pl.lit(1.5).alias("extra")), /part 2 .*extra\.parquet/],
      ["missing", base.drop("i32"), /part 2 .*missing\.parquet/],
    ];
    for (const [name, df, pattern] of cases) {
      const bad = join(dir, `${name}.parquet`);
      df.writeParquet(bad);
      const target = join(dir, `never-${name}.parquet`);
      await expect(concatParquetFiles([parts[0] ?? "", parts[1] ?? "", bad, parts[2] ?? ""], target), name).rejects.toThrow(pattern);
      await expect(stat(target)).rejects.toThrow(/ENOENT/);
      expect(await leftovers()).toEqual([]);
    }
  });

  it("fails cleanly on unreadable parts and on errors during the copy, keeping an existing output", async () => {
    const target = join(dir, "existing.parquet");
    await writeFile(target, "previous content");
    const garbage = join(dir, "garbage.parquet");
    await writeFile(garbage, Buffer.alloc(1000, 7));
    await expect(concatParquetFiles([parts[0] ?? "", garbage], target)).rejects.toThrow(/garbage\.parquet.*not a parquet file/);
    await expect(concatParquetFiles([parts[0] ?? "", join(dir, "absent.parquet")], target)).rejects.toThrow(/ENOENT/);
    await expect(
      concatParquetFiles(parts, target, {
        onProgress: (done) => {
          if (done > 0) throw new Error("disk full (simulated)");
        },
      }),
    ).rejects.toThrow(/disk full/);
    expect(await readFile(target, "utf8")).toBe("previous content");
    expect(await leftovers()).toEqual([]);
    await expect(concatParquetFiles([], target)).rejects.toThrow(/no parts/);
    await expect(concatParquetFiles([target, parts[0] ?? ""], target)).rejects.toThrow(/is the output file/);
  });
});

/** A frame of the key plus `cols` Float64 columns (with nulls), built through CSV (fast for wide frames). */
function wideFrame(cols: number, rows: number, start: number, seed: number): pl.DataFrame {
  const header = ["interval_time", ...Array.from({ length: cols }, (_, c) => `var_${c}`)];
  const lines = [header.join(",")];
  for (let r = 0; r < rows; r++) {
    const row = new Array<string>(cols + 1);
    row[0] = String(keyMicros(start + r));
    for (let c = 0; c < cols; c++) {
      const x = (start + r) * 31 + c * 17 + seed;
      row[c + 1] = c === 5 || x % 9 === 0 ? "" : String((x % 1000) / 7);
    }
    lines.push(row.join(","));
  }
  return pl
    .readCSV(lines.join("\n"), { inferSchemaLength: 0 })
    .select(pl.col("interval_time").cast(pl.Int64).cast(pl.Datetime("us", "UTC")), pl.exclude("interval_time").cast(pl.Float64));
}

describe("wide files", () => {
  it("concatenates 3 parts of 3,000 columns", async () => {
    const parts: string[] = [];
    const frames: pl.DataFrame[] = [];
    for (let i = 0; i < 3; i++) {
      const df = wideFrame(3_000, 400, i * 400, i);
      const path = join(dir, `wide-${i}.parquet`);
      await df.lazy().sinkParquet(path, { rowGroupSize: 200, compression: "zstd" }).collect();
      parts.push(path);
      frames.push(df);
    }
    const t1 = performance.now();
    const out = join(dir, "wide.parquet");
    const res = await concatParquetFiles(parts, out);
    const t2 = performance.now();
    expect(res).toMatchObject({ rows: 1_200, rowGroups: 6 });
    const expected = pl.concat(frames);
    const got = pl.readParquet(out);
    expect(got.shape).toEqual({ height: 1_200, width: 3_001 });
    expect(got.frameEqual(expected, true)).toBe(true);
    expect(exactValues(got, "interval_time")).toEqual(exactValues(expected, "interval_time"));

    const footer = await readFooterSummary(out);
    const nulls = expected.nullCount().toRecords()[0] ?? {};
    expect(footer.leafPaths).toHaveLength(3_001);
    expect(footer.leafPaths.map((name) => footer.nullCounts.get(name))).toEqual(footer.leafPaths.map((name) => Number(nulls[name])));
    expect(footer.nullCounts.get("var_5")).toBe(1_200);

    const sample = ["interval_time", ...Array.from({ length: 60 }, (_, i) => `var_${i * 50}`), "var_2999"];
    const cmp = await duckMismatches(out, parts, sample);
    expect(cmp).toEqual({ out: 1_200, parts: 1_200, mismatches: 0 });
    // concatenation itself is a byte copy: it must be quick (generating the parts is not)
    expect(t2 - t1).toBeLessThan(5_000);
  });

  it("writes a 17,038-column x 20-row-group footer in well under a few seconds", async () => {
    const part = join(dir, "w17k.parquet");
    wideFrame(17_038, 4, 0, 3).writeParquet(part, { compression: "zstd" });
    const out = join(dir, "w17k-x20.parquet");
    const t0 = performance.now();
    const res = await concatParquetFiles(Array.from({ length: 20 }, () => part), out);
    const elapsed = performance.now() - t0;
    expect(res).toMatchObject({ rows: 80, rowGroups: 20 });
    expect(elapsed).toBeLessThan(5_000); // ~1 s on an idle 2-core machine
    const t1 = performance.now();
    const summary = await readFooterSummary(out);
    expect(performance.now() - t1).toBeLessThan(3_000);
    expect(summary.columnNames).toHaveLength(17_039);
    expect(summary.rowGroups).toHaveLength(20);
    expect(summary.footerBytes).toBeGreaterThan(10_000_000);
    expect(summary.nullCounts.get("var_5")).toBe(80);
    let n = 0;
    await readColumn(out, "var_17037", (v) => {
      n += v.length;
    });
    expect(n).toBe(80);
    const duckCount = await duck.runAndReadAll(`SELECT count(*), count(var_17037), count(var_5) FROM read_parquet(${sqlString(out)})`);
    expect(duckCount.getRowsJS()[0]?.map(Number)).toEqual([80, summary.numRows - Number(summary.nullCounts.get("var_17037")), 0]);
  });
});
