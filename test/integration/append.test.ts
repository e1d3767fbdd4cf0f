// ColumnAppender: files with the same rows and row-group boundaries, appended in any order,
// become one file whose columns are in file-index order and whose content equals polars'
// horizontal concatenation, readable by polars and DuckDB.
import { mkdtemp, readFile, readdir, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ColumnAppender } from "../../src/parquet/append.ts";
import { readFooterSummary } from "../../src/parquet/footer.ts";
import { stitchParquetColumns } from "../../src/parquet/stitch.ts";
import { rng } from "../support/checkpoints.ts";

const ROWS = 7_321;
const RG = 1_000;
let dir = "";
const parts: string[] = [];
let expected: pl.DataFrame;

function part(index: number, columns: number, nullRate: number): pl.DataFrame {
  const random = rng(100 + index);
  const series: pl.Series[] = [];
  if (index === 0) {
    const base = 1_704_067_200_000_000n;
    series.push(pl.Series("interval_time", BigInt64Array.from({ length: ROWS }, (_, i) => base + BigInt(i) * 60_000_000n) as unknown as number[]).cast(pl.Datetime("us", "UTC")));
  }
  for (let c = 0; c < columns; c++) {
    series.push(pl.Series(`t${index}_c${c}`, Array.from({ length: ROWS }, () => (random() < nullRate ? null : random() * 10 - 5)), pl.Float64));
  }
  return pl.DataFrame(series);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "append-"));
  const frames = [part(0, 2, 0), part(1, 5, 0.1), part(2, 1, 1), part(3, 40, 0.3), part(4, 3, 0)];
  for (const [i, f] of frames.entries()) {
    const file = join(dir, `part-${i}.parquet`);
    await f.lazy().sinkParquet(file, { compression: "zstd", compressionLevel: 1, statistics: true, rowGroupSize: RG }).collect();
    parts.push(file);
  }
  expected = pl.concat(frames, { how: "horizontal" });
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("ColumnAppender", () => {
  it("puts the columns in index order whatever the order of appends, equal to a horizontal concat", async () => {
    const out = join(dir, "shuffled.parquet");
    const appender = await ColumnAppender.create(out, { keyValueMetadata: { "bqx.pair": "eurusd" } });
    for (const i of [3, 0, 4, 1, 2]) await appender.append(parts[i]!, i);
    const result = await appender.finish();
    expect(result).toMatchObject({ rows: ROWS, rowGroups: Math.ceil(ROWS / RG), columns: expected.width, bytes: (await stat(out)).size });

    const got = pl.readParquet(out);
    expect(got.columns).toEqual(expected.columns);
    expect(got.frameEqual(expected, true)).toBe(true);
    const summary = await readFooterSummary(out);
    expect(summary.rowGroups.map((g) => g.numRows)).toEqual(Array.from({ length: Math.ceil(ROWS / RG) }, (_, g) => Math.min(RG, ROWS - g * RG)));
    expect(summary.keyValueMetadata["bqx.pair"]).toBe("eurusd");
    expect(await readdir(dir)).not.toContain("shuffled.parquet.tmp");
  });

  it("gives the same content as stitching, and the same bytes for the same order of appends", async () => {
    const a = join(dir, "a.parquet");
    const b = join(dir, "b.parquet");
    for (const out of [a, b]) {
      const appender = await ColumnAppender.create(out);
      for (const [i, p] of parts.entries()) await appender.append(p, i);
      await appender.finish();
    }
    const stitched = join(dir, "stitched.parquet");
    await stitchParquetColumns(parts, stitched);
    expect(Buffer.compare(await readFile(a), await readFile(b))).toBe(0);
    expect(pl.readParquet(a).frameEqual(pl.readParquet(stitched), true)).toBe(true);
  });

  it("is read row group by row group and column by column by DuckDB with the right values", async () => {
    const out = join(dir, "duck.parquet");
    const appender = await ColumnAppender.create(out);
    for (const i of [4, 3, 2, 1, 0]) await appender.append(parts[i]!, i);
    await appender.finish();
    const duck = await (await DuckDBInstance.create(":memory:")).connect();
    try {
      const reader = await duck.runAndReadAll(
        `SELECT count(*) AS n, count(t2_c0) AS all_null, sum(t3_c39) AS s, min(interval_time)::VARCHAR AS lo FROM read_parquet('${out}') WHERE t4_c0 > 0`,
      );
      const row = reader.getRowObjects()[0]!;
      const mask = expected.getColumn("t4_c0").gt(0);
      const filtered = expected.filter(mask);
      expect(Number(row.n)).toBe(filtered.height);
      expect(Number(row.all_null)).toBe(0);
      expect(row.s as number).toBeCloseTo(filtered.getColumn("t3_c39").sum() as number, 6);
      expect(row.lo).toBe("2024-01-01 00:00:00+00");
    } finally {
      duck.closeSync();
    }
  });

  it("refuses a file whose row groups differ, a repeated index, a repeated column name, and a missing index", async () => {
    const odd = join(dir, "odd.parquet");
    await part(9, 2, 0).lazy().sinkParquet(odd, { compression: "zstd", rowGroupSize: 2_000 }).collect();
    const out = join(dir, "bad.parquet");
    const appender = await ColumnAppender.create(out);
    await appender.append(parts[0]!, 0);
    await expect(appender.append(odd, 1)).rejects.toThrow(/row groups differ: .*odd\.parquet/);
    await expect(appender.append(parts[0]!, 0)).rejects.toThrow(/file index 0 appended twice/);
    await expect(appender.append(parts[0]!, 2)).rejects.toThrow(/duplicate column "interval_time"/);
    await appender.append(parts[2]!, 2);
    await expect(appender.finish()).rejects.toThrow(/file index 1 was never appended/);
    const left = await readdir(dir);
    expect(left).not.toContain("bad.parquet");
    expect(left).not.toContain("bad.parquet.tmp");
  });

  it("leaves nothing behind when aborted", async () => {
    const out = join(dir, "aborted.parquet");
    const appender = await ColumnAppender.create(out);
    await appender.append(parts[1]!, 1);
    await appender.abort();
    const left = await readdir(dir);
    expect(left.filter((f) => f.startsWith("aborted"))).toEqual([]);
  });
});

