import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { JobError } from "../../src/errors.ts";
import { readFooterSummary, readRawFooter } from "../../src/parquet/footer.ts";
import { Reader, Sink } from "../../src/parquet/thrift.ts";

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
    pl.Series(
      "f_a",
      idx.map((i) => (i % 5 === 0 ? null : i * 0.1 + Math.PI)),
      pl.Float64,
    ),
    pl.Series(
      "all_null",
      idx.map(() => null),
      pl.Float64,
    ),
    pl.Series("big", idx.map(bigValue), pl.Utf8).cast(pl.Int64),
    pl.Series(
      "pair",
      idx.map((i) => ["eurusd", "gbpusd", "usdjpy"][i % 3] ?? ""),
      pl.Utf8,
    ),
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

describe("readFooterSummary", () => {
  it("reads counts, names, row groups, null counts and key/value metadata from the footer alone", async () => {
    const footer = await readFooterSummary(file);
    expect(footer.numRows).toBe(ROWS);
    expect(footer.columnNames).toEqual(["interval_time", "f_a", "all_null", "big", "pair"]);
    expect(footer.leafPaths).toEqual(footer.columnNames);
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
  });

  it("reports undefined null counts when statistics are missing", async () => {
    const footer = await readFooterSummary(noStats);
    expect(footer.numRows).toBe(ROWS);
    for (const name of footer.columnNames) expect(footer.nullCounts.get(name)).toBeUndefined();
    expect(footer.nullCounts.size).toBe(5);
  });

  it("reads only the tail of the file", async () => {
    const raw = await readRawFooter(file);
    expect(raw.footerStart + raw.thrift.length + 8).toBe(raw.fileBytes);
    expect(raw.thrift.length).toBeLessThan(raw.fileBytes / 4);
  });

  it("refuses files that are not parquet with a JobError naming the file and the fix", async () => {
    const bad = join(dir, "bad.parquet");
    await writeFile(bad, "this is not a parquet file at all");
    const err = await readFooterSummary(bad).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(JobError);
    expect((err as JobError).message).toMatch(/bad\.parquet is not a parquet file \(no trailing PAR1\)/);
    expect((err as JobError).reason).toBe("parquet-invalid");
    expect((err as JobError).fix).toMatch(/written again/);
    const tiny = join(dir, "tiny.parquet");
    await writeFile(tiny, "PAR1");
    await expect(readFooterSummary(tiny)).rejects.toThrow(/tiny\.parquet is not a parquet file \(4 bytes\)/);
    const lying = join(dir, "lying.parquet");
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(5000, 0);
    trailer.write("PAR1", 4, "latin1");
    await writeFile(lying, Buffer.concat([Buffer.from("PAR1"), Buffer.alloc(20), trailer]));
    await expect(readFooterSummary(lying)).rejects.toThrow(/footer length 5000 exceeds the file's 32 bytes/);
  });

  it("refuses a footer whose thrift is cut short, naming the file", async () => {
    const raw = await readRawFooter(file);
    const cut = join(dir, "cut.parquet");
    const body = raw.thrift.subarray(0, Math.floor(raw.thrift.length / 2));
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(body.length, 0);
    trailer.write("PAR1", 4, "latin1");
    await writeFile(cut, Buffer.concat([Buffer.from("PAR1"), body, trailer]));
    await expect(readFooterSummary(cut)).rejects.toThrow(/cut\.parquet: its parquet footer cannot be read/);
  });
});
