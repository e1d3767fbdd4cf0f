// A training file assembled from parts written by polars (src/extract/part-writer.ts) and a footer
// merged from theirs (src/parquet/merged-footer.ts, src/parts/assemble.ts): read back by polars and
// DuckDB, it equals the chain of left joins, whatever the slicing.
import { readFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { crc32c } from "@node-rs/crc32";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { crc32cOfConcatenation } from "../../src/crc32c-combine.ts";
import { alignToKeys, keyFrameOf, writePart } from "../../src/extract/part-writer.ts";
import type { WrittenPart } from "../../src/extract/task.ts";
import { mergeFooters, planPart, readRawFooter, summarizeFooter } from "../../src/parquet/index.ts";
import { PARQUET_MAGIC, footerObject, layOut } from "../../src/parts/assemble.ts";
import type { StagedPart } from "../../src/parts/store.ts";
import { rng } from "../../standins/rng.ts";

const ROWS = 1000;
const PER_GROUP = 128;
const BASE = 1_577_836_800_000_000n; // 2020-01-01 UTC, µs

let dir: string;
let keys: BigInt64Array;
let target: pl.DataFrame;
const features: Record<string, pl.DataFrame> = {};

/** A feature table: every third key missing, a few extra keys the target lacks, nulls here and there. */
function featureTable(name: string, columns: number, seed: number): pl.DataFrame {
  const random = rng(seed);
  const rowKeys: bigint[] = [];
  for (let i = 0; i < ROWS; i++) if (i % 3 !== 1) rowKeys.push(keys[i]!);
  rowKeys.push(BASE - 60_000_000n, keys[ROWS - 1]! + 60_000_000n);
  const order = rowKeys.map((_, i) => i).sort(() => random() - 0.5); // any order: the join must not care
  const cols: pl.Series[] = [
    pl
      .Series("interval_time", order.map((i) => rowKeys[i]!) as unknown as number[])
      .cast(pl.Int64)
      .cast(pl.Datetime("us", "UTC")),
  ];
  for (let c = 0; c < columns; c++)
    cols.push(
      pl.Series(
        `${name}_c${c}`,
        order.map(() => (random() < 0.1 ? null : Math.round(random() * 1e6) / 1e3)),
        pl.Float64,
      ),
    );
  return pl.DataFrame(cols);
}

async function part(frame: pl.DataFrame, file: string, minMax: boolean): Promise<WrittenPart> {
  return writePart(frame, path.join(dir, file), { rowsPerGroup: PER_GROUP, minMax }, file);
}

/** Stages a written part "in memory": its chunk bytes and footer, as the bucket would hold them. */
async function asStaged(written: WrittenPart, table: number, firstRowGroup: number, label: string): Promise<{ staged: StagedPart; bytes: Buffer }> {
  const file = await readFile(written.path);
  const thrift = file.subarray(written.footerStart, written.footerEnd);
  const bytes = file.subarray(written.dataStart, written.dataEnd);
  const plan = planPart(thrift, label);
  return {
    staged: {
      fingerprint: label,
      table,
      label,
      firstRowGroup,
      endRowGroup: firstRowGroup + plan.rowGroupRows.length,
      chunks: { name: label, generation: "1", bytes: bytes.length, crc32c: crc32c(bytes) },
      sourceRows: 0,
      footerThrift: new Uint8Array(thrift),
      reused: false,
    },
    bytes,
  };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "parts-assembly-"));
  keys = BigInt64Array.from({ length: ROWS }, (_, i) => BASE + BigInt(i) * 60_000_000n);
  target = keyFrameOf(keys).withColumns(
    pl.Series(
      "target_a",
      Array.from({ length: ROWS }, (_, i) => i * 0.5),
    ),
    pl.Series(
      "target_b",
      Array.from({ length: ROWS }, (_, i) => (i % 11 === 0 ? null : -i)),
    ),
  );
  features.alpha = featureTable("alpha", 5, 1);
  features.beta = featureTable("beta", 3, 2);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function assemble(sliceBeta: number[][]): Promise<{ file: string; expectedCrc: number; rowGroupRows: number[] }> {
  const groups = Math.ceil(ROWS / PER_GROUP);
  const rowGroupRows = Array.from({ length: groups }, (_, g) => Math.min(PER_GROUP, ROWS - g * PER_GROUP));
  const staged: { staged: StagedPart; bytes: Buffer }[] = [];
  staged.push(await asStaged(await part(target, "target.parquet", true), 0, 0, "target"));
  staged.push(await asStaged(await part(alignToKeys(features.alpha!, keys, "alpha"), "alpha.parquet", false), 1, 0, "alpha"));
  for (const [first, end] of sliceBeta) {
    const sliceKeys = keys.subarray(first! * PER_GROUP, Math.min(ROWS, end! * PER_GROUP));
    staged.push(await asStaged(await part(alignToKeys(features.beta!, sliceKeys, "beta"), `beta-${first}.parquet`, false), 2, first!, `beta-${first}`));
  }
  // Handed over out of order: the layout sorts them into the file's order.
  const layout = layOut(staged.map((s) => s.staged).reverse(), rowGroupRows);
  const footer = footerObject(layout, { "bqx.test": "yes" });
  const bytesOf = new Map(staged.map((s) => [s.staged.label, s.bytes]));
  const pieces = [PARQUET_MAGIC, ...layout.parts.map((p) => bytesOf.get(p.label)!), footer];
  const file = path.join(dir, `training-${sliceBeta.length}.parquet`);
  await writeFile(file, Buffer.concat(pieces));
  return { file, expectedCrc: crc32cOfConcatenation(pieces.map((b) => ({ crc32c: crc32c(b), bytes: b.length }))), rowGroupRows };
}

describe("a training file assembled from parts", () => {
  it.each([
    ["one part per table", [[0, 8]]],
    [
      "the second table in three slices",
      [
        [0, 3],
        [3, 6],
        [6, 8],
      ],
    ],
  ])("equals the chain of left joins when read by polars (%s)", async (_name, slices) => {
    const { file } = await assemble(slices);
    const expected = target
      .join(features.alpha!, { on: "interval_time", how: "left", maintainOrder: "left" })
      .join(features.beta!, { on: "interval_time", how: "left", maintainOrder: "left" });
    const got = pl.readParquet(file);
    expect(got.columns).toEqual(expected.columns);
    expect(got.height).toBe(ROWS);
    expect(got.frameEqual(expected, true)).toBe(true);
  });

  it("is read by DuckDB with every row group, null counts in its footer, and its CRC32C predicted from the pieces", async () => {
    const { file, expectedCrc, rowGroupRows } = await assemble([
      [0, 3],
      [3, 6],
      [6, 8],
    ]);
    expect(crc32c(await readFile(file))).toBe(expectedCrc);
    const instance = await DuckDBInstance.create(":memory:");
    const c = await instance.connect();
    const row = (
      await c.runAndReadAll(
        `SELECT count(*)::INTEGER AS n, count(DISTINCT interval_time)::INTEGER AS d, count(beta_c0)::INTEGER AS b, sum(target_a) AS s FROM read_parquet('${file}')`,
      )
    ).getRowObjectsJS()[0]!;
    expect(row).toEqual({ n: ROWS, d: ROWS, b: expect.any(Number), s: (ROWS * (ROWS - 1)) / 4 });
    c.closeSync();
    instance.closeSync();
    const raw = await readRawFooter(file);
    const summary = summarizeFooter(raw.thrift, raw.fileBytes);
    expect(summary.rowGroups.map((g) => g.numRows)).toEqual(rowGroupRows);
    expect(summary.keyValueMetadata["bqx.test"]).toBe("yes");
    expect(summary.keyValueMetadata["ARROW:schema"]).toBeUndefined();
    const nullsInBeta = features.beta!.getColumn("beta_c1").nullCount();
    expect(summary.nullCounts.get("beta_c1")).toBeGreaterThanOrEqual(Math.floor(ROWS / 3));
    expect(nullsInBeta).toBeGreaterThan(0);
  });
});

describe("merging footers", () => {
  it("refuses parts that leave a row group of a table uncovered, overlap, disagree with the plan or repeat a column", async () => {
    const groups = Math.ceil(ROWS / PER_GROUP);
    const rowGroupRows = Array.from({ length: groups }, (_, g) => Math.min(PER_GROUP, ROWS - g * PER_GROUP));
    const t = await asStaged(await part(target, "t2.parquet", true), 0, 0, "target");
    const a = await asStaged(await part(alignToKeys(features.alpha!, keys, "alpha"), "a2.parquet", false), 1, 0, "alpha");
    const b0 = await asStaged(await part(alignToKeys(features.beta!, keys.subarray(0, 3 * PER_GROUP), "beta"), "b0.parquet", false), 2, 0, "beta-0");
    const placed = (s: StagedPart, at = 4) => ({ plan: planPart(s.footerThrift, s.label), table: s.table, firstRowGroup: s.firstRowGroup, placedAt: at });
    expect(() => mergeFooters([placed(t.staged), placed(a.staged), placed(b0.staged)], rowGroupRows)).toThrow(/table 2: its parts cover 3 of 8 row groups/);
    expect(() => mergeFooters([placed(t.staged), placed(a.staged), { ...placed(b0.staged), firstRowGroup: 1 }], rowGroupRows)).toThrow(
      /beta-0: starts at row group 1, but the parts before it end at 0/,
    );
    expect(() =>
      mergeFooters(
        [placed(t.staged)],
        rowGroupRows.map((n) => n - 1),
      ),
    ).toThrow(/row group 0 has 128 rows, the plan has 127/);
    expect(() => mergeFooters([placed(t.staged), placed(a.staged), { ...placed(a.staged), table: 3 }], rowGroupRows)).toThrow(/duplicate column "alpha_c0"/);
  });
});

describe("the merged footer's size", () => {
  it("stays within the plan's estimate per column chunk (CHUNK_FOOTER_BYTES plus the name)", async () => {
    const { file } = await assemble([[0, 8]]);
    const raw = await readRawFooter(file);
    const summary = summarizeFooter(raw.thrift, raw.fileBytes);
    const { footerBytesPerRowGroup } = await import("../../src/parts/plan.ts");
    const featureNames = summary.columnNames.filter((n) => n.startsWith("alpha") || n.startsWith("beta"));
    const targetNames = summary.columnNames.filter((n) => !featureNames.includes(n));
    const estimate = footerBytesPerRowGroup(summary.columnNames, targetNames.length) * summary.rowGroups.length;
    // The schema and key/value metadata come on top of the chunk entries; the estimate must cover the whole footer here.
    expect(raw.thrift.length).toBeLessThanOrEqual(estimate);
  });
});
