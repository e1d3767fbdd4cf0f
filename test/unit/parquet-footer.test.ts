import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Reader,
  Sink,
  readColumn,
  readFooter,
  readFooterSummary,
  readRawFooter,
} from "../../src/parquet/footer.ts";

const BASE_US = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z in µs (exact as a double)
const ROWS = 2_345;
const ROW_GROUP = 1_000;

let dir = "";
let file = "";
let noStats = "";
let frame: pl.DataFrame;

/** Key µs values with sub-millisecond parts, so a Date round trip would be visibly lossy. */
function keyMicros(i: number): number {
  return BASE_US + i * 60_000_000 + (i % 997);
}

function bigValue(i: number): string | null {
  if (i % 7 === 3) return null;
  const v = 2n ** 60n + BigInt(i) * 1_000_003n;
  return (i % 2 === 0 ? v : -v).toString();
}

function makeFrame(n: number): pl.DataFrame {
  const idx = Array.from({ length: n }, (_, i) => i);
  return pl.DataFrame([
    pl.Series("interval_time", idx.map(keyMicros), pl.Int64).cast(pl.Datetime("us", "UTC")),
    pl.Series("f_a", idx.map((i) => (i % 5 === 0 ? null : i * 0.1 + Math.PI)), pl.Float64),
    pl.Series("all_null", idx.map(() => null), pl.Float64),
    pl.Series("big", idx.map(bigValue), pl.Utf8).cast(pl.Int64),
    pl.Series("pair", idx.map((i) => ["eurusd", "gbpusd", "usdjpy"][i % 3] ?? ""), pl.Utf8),
  ]);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "parquet-footer-"));
  file = join(dir, "part.parquet");
  noStats = join(dir, "nostats.parquet");
  frame = makeFrame(ROWS);
  await frame.lazy().sinkParquet(file, { rowGroupSize: ROW_GROUP, compression: "zstd" }).collect();
  await frame.lazy().sinkParquet(noStats, { rowGroupSize: ROW_GROUP, compression: "zstd", statistics: false }).collect();
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("thrift compact helpers", () => {
  it("round-trips varints and zigzag integers beyond 32 bits", () => {
    const values = [0, 1, -1, 63, -64, 300, 2 ** 31, -(2 ** 31) - 5, 9_876_543_210, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
    const sink = new Sink(4);
    for (const v of values) sink.zigzag(v);
    const r = new Reader(sink.take());
    expect(values.map(() => r.zigzag())).toEqual(values);
  });

  it("refuses integers it cannot represent exactly", () => {
    const sink = new Sink();
    expect(() => sink.zigzag(2 ** 60)).toThrow(/cannot encode/);
  });
});

describe("readFooter", () => {
  it("reads counts, names, row groups, null counts and key/value metadata", async () => {
    const footer = await readFooter(file);
    expect(footer.numRows).toBe(ROWS);
    expect(footer.columnNames).toEqual(["interval_time", "f_a", "all_null", "big", "pair"]);
    expect(footer.rowGroups.map((g) => g.numRows)).toEqual([1000, 1000, 345]);
    expect(footer.rowGroups.every((g) => g.totalByteSize > 0)).toBe(true);
    expect(footer.fileBytes).toBe((await stat(file)).size);
    expect(footer.footerBytes).toBeGreaterThan(0);
    expect(footer.footerBytes).toBeLessThan(footer.fileBytes);
    expect(Object.keys(footer.keyValueMetadata)).toContain("ARROW:schema");
    expect(footer.createdBy).toMatch(/polars/i);
    for (const name of footer.columnNames) {
      expect(footer.nullCounts.get(name), name).toBe(frame.getColumn(name).nullCount());
    }
    expect(footer.nullCounts.get("all_null")).toBe(ROWS);
    // hyparquet FileMetaData is there too, with exact (bigint µs) timestamp statistics
    expect(footer.row_groups).toHaveLength(3);
    const keyStats = footer.row_groups[0]?.columns[0]?.meta_data?.statistics;
    expect(keyStats?.min_value).toBe(BigInt(keyMicros(0)));
    expect(keyStats?.max_value).toBe(BigInt(keyMicros(999)));
    expect(footer.schema[1]?.logical_type).toEqual({ type: "TIMESTAMP", isAdjustedToUTC: true, unit: "MICROS" });
  });

  it("readFooterSummary agrees with readFooter without building FileMetaData", async () => {
    const full = await readFooter(file);
    const summary = await readFooterSummary(file);
    expect(summary).toEqual({
      numRows: full.numRows,
      columnNames: full.columnNames,
      leafPaths: full.leafPaths,
      rowGroups: full.rowGroups,
      nullCounts: full.nullCounts,
      keyValueMetadata: full.keyValueMetadata,
      createdBy: full.createdBy,
      fileBytes: full.fileBytes,
      footerBytes: full.footerBytes,
    });
    expect("row_groups" in summary).toBe(false);
  });

  it("reports undefined null counts when statistics are missing", async () => {
    const footer = await readFooter(noStats);
    expect(footer.numRows).toBe(ROWS);
    for (const name of footer.columnNames) expect(footer.nullCounts.get(name)).toBeUndefined();
    expect(footer.nullCounts.size).toBe(5);
  });

  it("reads only the tail of the file", async () => {
    const raw = await readRawFooter(file);
    expect(raw.footerStart + raw.thrift.length + 8).toBe(raw.fileBytes);
    expect(raw.tail.length).toBe(raw.thrift.length + 8);
    expect(raw.tail.length).toBeLessThan(raw.fileBytes / 4);
  });

  it("rejects files that are not parquet", async () => {
    const bad = join(dir, "bad.parquet");
    await writeFile(bad, "this is not a parquet file at all");
    await expect(readFooter(bad)).rejects.toThrow(/bad\.parquet.*not a parquet file/);
    const tiny = join(dir, "tiny.parquet");
    await writeFile(tiny, "PAR1");
    await expect(readFooter(tiny)).rejects.toThrow(/not a parquet file/);
  });
});

describe("readColumn", () => {
  it("streams the key exactly as bigint microseconds, one row group at a time", async () => {
    const chunks: { g: number; n: number }[] = [];
    const values: unknown[] = [];
    const res = await readColumn(file, "interval_time", (v, g) => {
      chunks.push({ g, n: v.length });
      for (let i = 0; i < v.length; i++) values.push(v[i]);
    });
    expect(res).toEqual({ rows: ROWS, rowGroups: 3 });
    expect(chunks).toEqual([{ g: 0, n: 1000 }, { g: 1, n: 1000 }, { g: 2, n: 345 }]);
    expect(values.every((v) => typeof v === "bigint")).toBe(true);
    expect(values).toEqual(Array.from({ length: ROWS }, (_, i) => BigInt(keyMicros(i))));
  });

  it("returns Int64 beyond 2^53 exactly, nulls as null, strings and doubles", async () => {
    const big: unknown[] = [];
    await readColumn(file, "big", (v) => {
      for (let i = 0; i < v.length; i++) big.push(v[i]);
    });
    expect(big.map((v) => (v === null ? null : String(v)))).toEqual(Array.from({ length: ROWS }, (_, i) => bigValue(i)));

    const fa: unknown[] = [];
    await readColumn(file, "f_a", (v) => {
      for (let i = 0; i < v.length; i++) fa.push(v[i]);
    });
    expect(fa).toEqual(frame.getColumn("f_a").toArray());

    const pair: unknown[] = [];
    await readColumn(file, "pair", (v) => {
      for (let i = 0; i < v.length; i++) pair.push(v[i]);
    });
    expect(pair).toEqual(frame.getColumn("pair").toArray());

    let nulls = 0;
    await readColumn(file, "all_null", (v) => {
      for (let i = 0; i < v.length; i++) if (v[i] === null) nulls++;
    });
    expect(nulls).toBe(ROWS);
  });

  it("accepts a footer read beforehand and awaits the callback", async () => {
    const footer = await readFooter(file);
    const order: string[] = [];
    await readColumn(
      file,
      "interval_time",
      async (v, g) => {
        order.push(`start ${g}`);
        await new Promise((r) => setTimeout(r, 5));
        order.push(`end ${g} ${v.length}`);
      },
      { footer },
    );
    expect(order).toEqual(["start 0", "end 0 1000", "start 1", "end 1 1000", "start 2", "end 2 345"]);
  });

  it("names the missing column", async () => {
    await expect(readColumn(file, "nope", () => {})).rejects.toThrow(/no column "nope"/);
  });
});
