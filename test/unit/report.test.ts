// The run report's pure parts: per row group statistics from a real parquet footer, the heat-map
// cells computed from them, escaping of every name, and the index across pairs.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TARGET_COLUMNS } from "../../src/constants.ts";
import { readRawFooter, rowGroupStats, type FooterRowGroupStats } from "../../src/parquet/index.ts";
import { buildReportData, indexEntry, pairOfManifest, renderIndex, renderReport, type ReportInput } from "../../src/report/index.ts";
import { esc } from "../../src/report/svg.ts";
import { validateTrainingFile } from "../../src/validation.ts";

const BASE_US = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z
const ROWS = 2_345;
const ROW_GROUP = 1_000;
let dir = "";
let file = "";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "report-unit-"));
  file = join(dir, "part.parquet");
  const idx = Array.from({ length: ROWS }, (_, i) => i);
  await pl
    .DataFrame([
      pl
        .Series(
          "interval_time",
          idx.map((i) => BASE_US + i * 60_000_000),
          pl.Int64,
        )
        .cast(pl.Datetime("us", "UTC")),
      pl.Series(
        "every_fifth_null",
        idx.map((i) => (i % 5 === 0 ? null : i * 0.5)),
        pl.Float64,
      ),
      pl.Series(
        "null_from_1500",
        idx.map((i) => (i >= 1500 ? null : i)),
        pl.Float64,
      ),
      pl.Series(
        "none_null",
        idx.map((i) => i),
        pl.Float64,
      ),
    ])
    .lazy()
    .sinkParquet(file, { rowGroupSize: ROW_GROUP, compression: "zstd" })
    .collect();
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Nulls of `predicate` among rows [start, end). */
const count = (start: number, end: number, predicate: (i: number) => boolean) =>
  Array.from({ length: end - start }, (_, k) => start + k).filter(predicate).length;

describe("rowGroupStats", () => {
  it("reads each row group's null count per column and the key's min and max from a real footer", async () => {
    const { thrift } = await readRawFooter(file);
    const stats = rowGroupStats(thrift, { rangeOf: "interval_time" });
    expect(stats.leafPaths).toEqual(["interval_time", "every_fifth_null", "null_from_1500", "none_null"]);
    expect(stats.rowGroups.map((g) => g.numRows)).toEqual([1000, 1000, 345]);
    const bounds = [
      [0, 1000],
      [1000, 2000],
      [2000, ROWS],
    ] as const;
    expect(stats.rowGroups.map((g) => [...g.nullCounts])).toEqual(
      bounds.map(([s, e]) => [0, count(s, e, (i) => i % 5 === 0), count(s, e, (i) => i >= 1500), 0]),
    );
    const micros = (b: Uint8Array) => new DataView(b.buffer, b.byteOffset, 8).getBigInt64(0, true);
    expect(stats.rowGroups.map((g) => [micros(g.range!.min), micros(g.range!.max)])).toEqual(
      bounds.map(([s, e]) => [BigInt(BASE_US + s * 60_000_000), BigInt(BASE_US + (e - 1) * 60_000_000)]),
    );
  });

  it("has no range for a column it was not asked about, and NaN where a chunk has no statistics", async () => {
    const noStats = join(dir, "nostats.parquet");
    await pl
      .DataFrame([pl.Series("a", [1, null, 3], pl.Float64)])
      .lazy()
      .sinkParquet(noStats, { statistics: false })
      .collect();
    const stats = rowGroupStats((await readRawFooter(noStats)).thrift);
    expect(stats.rowGroups).toHaveLength(1);
    expect(stats.rowGroups[0]!.range).toBeUndefined();
    expect(Number.isNaN(stats.rowGroups[0]!.nullCounts[0]!)).toBe(true);
  });
});

/** Stats for two row groups of 100 and 50 rows over the given columns' null counts. */
function statsOf(columns: Record<string, [number, number]>): FooterRowGroupStats {
  const leafPaths = Object.keys(columns);
  return {
    leafPaths,
    rowGroups: [100, 50].map((numRows, g) => ({ numRows, nullCounts: Float64Array.from(leafPaths, (c) => columns[c]![g]!) })),
  };
}

function inputWith(stats: FooterRowGroupStats, featureTables: ReportInput["featureTables"], extra: Partial<ReportInput> = {}): ReportInput {
  const columnNames = stats.leafPaths;
  const rows = stats.rowGroups.reduce((n, g) => n + g.numRows, 0);
  return {
    pair: "eurusd",
    createdAt: "2026-01-01T00:00:00.000Z",
    file: { uri: "/bucket/training_eurusd.parquet", bytes: 12_345, footerBytes: 2_000, crc32c: "AAAAAA==" },
    stageSeconds: { extract: 10, merge: 1, validate: 0.2, upload: 2 },
    tables: [
      { table: "a.targets_eurusd", rows, parts: 1, reusedParts: 0, startedSeconds: 0.5, seconds: 1 },
      ...featureTables.map((t, i) => ({ table: `f.${t.table}`, rows, parts: 1, reusedParts: 0, startedSeconds: 1 + i, seconds: 2 + i })),
    ],
    featureTables,
    targetColumns: TARGET_COLUMNS,
    stats,
    validation: validateTrainingFile({
      rows,
      columnNames,
      nullCounts: new Map(),
      key: { present: true, strictlyIncreasing: true },
      expectedRows: rows,
      tablesInFile: 1,
      tablesDiscovered: 1,
      familyOf: () => "x",
      minRows: 0,
      minColumns: 0,
    }),
    ...extra,
  };
}

describe("the report's data", () => {
  it("computes each heat-map cell as the family's null cells over its cells in that row group", () => {
    const stats = statsOf({
      interval_time: [0, 0],
      target_bqx45_h15: [0, 25],
      agg_a: [10, 0],
      agg_b: [30, 50],
      mom_c: [100, Number.NaN],
      mom_d: [Number.NaN, Number.NaN],
    });
    const data = buildReportData(
      inputWith(stats, [
        { table: "agg_eurusd", columns: ["agg_a"] },
        { table: "agg_bqx_eurusd", columns: ["agg_b"] },
        { table: "mom_eurusd", columns: ["mom_c", "mom_d"] },
      ]),
    );
    expect(data.nullHeat.families).toEqual(["agg", "mom"]);
    // agg: (10 + 30) / (2 x 100), then (0 + 50) / (2 x 50); mom: only mom_c has statistics, then none.
    expect([...data.nullHeat.values[0]!]).toEqual([0.2, 0.5]);
    expect(data.nullHeat.values[1]![0]).toBe(1);
    expect(Number.isNaN(data.nullHeat.values[1]![1]!)).toBe(true);
    expect(data.targetCoverage.columns).toEqual(["target_bqx45_h15"]);
    expect([...data.targetCoverage.values[0]!]).toEqual([1, 0.5]);
    expect(data.shape.columnsByFamily).toEqual([
      { family: "key and targets", tables: 1, columns: 2 },
      { family: "agg", tables: 2, columns: 2 },
      { family: "mom", tables: 1, columns: 2 },
    ]);
    expect(data.stages.map((s) => [s.name, s.startSeconds])).toEqual([
      ["extract", 0],
      ["merge", 10],
      ["validate", 11],
      ["upload", 11.2],
    ]);
    // Finish times (start + seconds) in order: 1.5 (target), 3, 5, 7.
    expect(data.extraction.progress).toEqual([
      { x: 1.5, y: 1 },
      { x: 3, y: 2 },
      { x: 5, y: 3 },
      { x: 7, y: 4 },
    ]);
    expect(data.extraction.slowest.map((t) => t.table)).toEqual(["f.mom_eurusd", "f.agg_bqx_eurusd", "f.agg_eurusd", "a.targets_eurusd"]);
  });

  it("draws one heat-map cell per family and row group, and labels row groups by index without a key range", () => {
    const stats = statsOf({ interval_time: [0, 0], agg_a: [10, 0], mom_c: [0, 0], var_x: [1, 1] });
    const html = renderReport(
      buildReportData(
        inputWith(stats, [
          { table: "agg_eurusd", columns: ["agg_a"] },
          { table: "mom_eurusd", columns: ["mom_c"] },
          { table: "var_agg", columns: ["var_x"] },
        ]),
      ),
    );
    const heat = /<figure id="null-heat-map">(.*?)<\/figure>/s.exec(html)![1]!;
    expect(heat.match(/<rect class="cell /g)).toHaveLength(3 * 2);
    expect(heat).toContain("<title>agg, row group 0: 10.0% null</title>");
    expect(heat).toContain("<title>row group 0, 100 rows</title>");
    expect(heat).toContain(">rg 0</text>");
  });
});

describe("the family table", () => {
  it("joins each family's tables and columns with its nulls from the validation report, the targets' on the key-and-targets line", () => {
    const stats = statsOf({ interval_time: [0, 0], target_bqx45_h15: [0, 25], agg_a: [10, 0], agg_b: [30, 50] });
    const input = inputWith(stats, [{ table: "agg_eurusd", columns: ["agg_a", "agg_b"] }]);
    input.validation = validateTrainingFile({
      rows: 150,
      columnNames: stats.leafPaths,
      nullCounts: new Map([
        ["interval_time", 0],
        ["target_bqx45_h15", 25],
        ["agg_a", 10],
        ["agg_b", 80],
      ]),
      key: { present: true, strictlyIncreasing: true },
      expectedRows: 150,
      tablesInFile: 2,
      tablesDiscovered: 2,
      familyOf: (c) => c.split("_")[0]!,
      minRows: 0,
      minColumns: 0,
    });
    const html = renderReport(buildReportData(input));
    const table = /<h3 id="families">.*?<tbody>(.*?)<\/tbody>/s.exec(html)![1]!;
    const cells = [...table.matchAll(/<tr>(.*?)<\/tr>/g)].map((r) => [...r[1]!.matchAll(/<td[^>]*>(.*?)<\/td>/g)].map((c) => c[1]));
    // agg: 90 null cells of 2 x 150; the target: 25 of 150.
    expect(cells).toEqual([
      ["key and targets", "1", "2", "25", "16.7%", "0"],
      ["agg", "1", "2", "90", "30.0%", "0"],
    ]);
  });
});

describe("escaping", () => {
  it("escapes the five HTML-special characters and keeps other text as it is", () => {
    expect(esc(`<a href="x">&'é€`)).toBe("&lt;a href=&quot;x&quot;&gt;&amp;&#39;é€");
  });

  it("never lets a table or column name out as markup", () => {
    const evil = `agg"><script>alert(1)</script>`;
    const column = `x'<img src=//e.example/p>&`;
    const stats = statsOf({ interval_time: [0, 0], [column]: [5, 5] });
    const input = inputWith(stats, [{ table: evil, columns: [column] }], {
      schemaChange: {
        policy: "warn",
        previous: null,
        notCompared: "first <build>",
        added: [column],
        removed: [],
        retyped: [{ column, table: evil, from: "DOUBLE", to: "INT64" }],
        tablesAdded: [evil],
        tablesRemoved: [],
        rowsChange: null,
      },
    });
    input.tables[1]!.seconds = 99; // the slowest table, so its name is drawn in the bar chart too
    const html = renderReport(buildReportData(input));
    expect(html).not.toMatch(/<script|<img/i);
    expect(html).toContain("&lt;script&gt;");
    expect(html).toContain("x&#39;&lt;img src=//e.example/p&gt;&amp;");
    expect(html).not.toMatch(/https?:\/\//);
  });
});

describe("the index across pairs", () => {
  it("takes each pair's shape, build time, size and report link from its manifest, and lists a bad one as unreadable", () => {
    expect(pairOfManifest("training_eurusd.manifest.json")).toBe("eurusd");
    expect(pairOfManifest("training_eurusd.parquet")).toBeUndefined();
    const good = indexEntry(
      "eurusd",
      "training_eurusd.manifest.json",
      JSON.stringify({ rows: 10, columns: 20, run: { createdAt: "2026-01-01T00:00:00Z", stageSeconds: { extract: 60, merge: 30 } }, file: { bytes: 2048 } }),
    );
    expect(good).toEqual({
      pair: "eurusd",
      manifest: "training_eurusd.manifest.json",
      rows: 10,
      columns: 20,
      createdAt: "2026-01-01T00:00:00Z",
      buildSeconds: 90,
      fileBytes: 2048,
      report: "../training_eurusd.report.html",
    });
    const bad = indexEntry("gbpusd", "training_gbpusd.manifest.json", "{not json");
    expect(bad).toMatchObject({ pair: "gbpusd", unreadable: expect.stringMatching(/^not JSON/) });
    expect(indexEntry("usdjpy", "m", "[]")).toMatchObject({ unreadable: "no rows and columns in it" });
    const html = renderIndex([bad, good], "2026-01-02T00:00:00Z");
    expect(html.indexOf("eurusd")).toBeLessThan(html.indexOf("gbpusd"));
    expect(html).toContain('<a href="../training_eurusd.report.html">report</a>');
    expect(html).toContain("10 x 20");
    expect(html).toContain("1m30s");
    expect(html).toContain("training_gbpusd.manifest.json is unreadable: not JSON");
  });
});
