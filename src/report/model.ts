// What the run report shows, computed from plain data: the run's record (stage and table times),
// the discovery (which table, so which family, each column comes from), the merged footer's
// statistics per row group (null counts, the key's min and max) and the validation report.
// Pure: the report stage gathers the inputs, `renderReport` turns the result into a page.
import { tableFamily } from "../discovery.ts";
import type { FooterRowGroupStats } from "../parquet/index.ts";
import type { SchemaChange } from "../schema-change.ts";
import type { ValidationReport } from "../validation.ts";

/** One table as the extract stage recorded it (stages/types.ts TableOutcome, its timing included). */
export interface TableTiming {
  table: string;
  rows: number;
  parts: number;
  reusedParts: number;
  /** Seconds from the extract stage's start to this table's first read; absent when every part was reused. */
  startedSeconds?: number;
  /** Seconds from its first read to its last part staged. */
  seconds?: number;
}

export interface ReportInput {
  pair: string;
  createdAt: string;
  execution?: string;
  file: { uri: string; bytes: number; footerBytes: number; crc32c: string; generation?: string };
  /** Each finished stage's seconds, in run order. */
  stageSeconds: Record<string, number>;
  /** The target first, then the feature tables, as extracted. */
  tables: readonly TableTiming[];
  /** Each feature table's name (without dataset) and its columns' names in the file. */
  featureTables: ReadonlyArray<{ table: string; columns: readonly string[] }>;
  targetColumns: readonly string[];
  stats: FooterRowGroupStats;
  validation: ValidationReport;
  schemaChange?: SchemaChange;
}

export interface RowGroupLabel {
  index: number;
  rows: number;
  /** The key's min and max in the group (ISO, minutes), when the footer has them. */
  from?: string;
  to?: string;
}

export interface ReportData {
  pair: string;
  createdAt: string;
  execution?: string;
  file: ReportInput["file"];
  shape: {
    rows: number;
    columns: number;
    features: number;
    tables: number;
    rowGroups: number;
    columnsByFamily: Array<{ family: string; tables: number; columns: number }>;
  };
  stages: Array<{ name: string; startSeconds: number; seconds: number }>;
  extraction: {
    /** Tables done against seconds since the extract stage began, one point per table read this run. */
    progress: Array<{ x: number; y: number }>;
    reusedTables: number;
    slowest: Array<{ table: string; seconds: number; rows: number; parts: number }>;
  };
  rowGroups: RowGroupLabel[];
  /** Null cells / cells, per family (rows) and row group (columns); NaN where no statistics. */
  nullHeat: { families: string[]; values: Float64Array[] };
  /** Non-null share of each target column per row group. */
  targetCoverage: { columns: string[]; values: Float64Array[] };
  validation: ValidationReport;
  schemaChange?: SchemaChange;
}

export const SLOWEST_TABLES = 15;

/** An INT64 TIMESTAMP(MICROS) statistic (8 bytes, little-endian) as "YYYY-MM-DD HH:MM"; undefined otherwise. */
export function microsLabel(bytes: Uint8Array | undefined): string | undefined {
  if (!bytes || bytes.length !== 8) return undefined;
  const micros = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigInt64(0, true);
  const ms = Number(micros / 1000n);
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString().slice(0, 16).replace("T", " ");
}

/**
 * Per row group, the share of null cells among `columns` (their indexes in the stats' leaves):
 * columns whose chunk has no null_count are left out; NaN when none has one.
 */
export function nullShare(stats: FooterRowGroupStats, columns: readonly number[]): Float64Array {
  return Float64Array.from(stats.rowGroups, (group) => {
    let nulls = 0;
    let known = 0;
    for (const c of columns) {
      const v = group.nullCounts[c]!;
      if (Number.isNaN(v)) continue;
      nulls += v;
      known += 1;
    }
    return known === 0 || group.numRows === 0 ? Number.NaN : nulls / (known * group.numRows);
  });
}

export function buildReportData(input: ReportInput): ReportData {
  const { stats } = input;
  const leafIndex = new Map(stats.leafPaths.map((p, i) => [p, i]));
  const families = new Map<string, { tables: number; columns: number[] }>();
  for (const t of input.featureTables) {
    const entry = families.get(tableFamily(t.table)) ?? { tables: 0, columns: [] };
    entry.tables += 1;
    for (const c of t.columns) {
      const i = leafIndex.get(c);
      if (i !== undefined) entry.columns.push(i);
    }
    families.set(tableFamily(t.table), entry);
  }
  const familyNames = [...families.keys()].sort();

  let at = 0;
  const stages = Object.entries(input.stageSeconds).map(([name, seconds]) => {
    const stage = { name, startSeconds: at, seconds };
    at += seconds;
    return stage;
  });

  const timed = input.tables.filter((t) => t.seconds !== undefined && t.startedSeconds !== undefined);
  const finishes = timed.map((t) => t.startedSeconds! + t.seconds!).sort((a, b) => a - b);
  const slowest = [...timed]
    .sort((a, b) => b.seconds! - a.seconds! || (a.table < b.table ? -1 : 1))
    .slice(0, SLOWEST_TABLES)
    .map((t) => ({ table: t.table, seconds: t.seconds!, rows: t.rows, parts: t.parts }));

  const rowGroups = stats.rowGroups.map((g, index) => {
    const from = microsLabel(g.range?.min);
    const to = microsLabel(g.range?.max);
    return { index, rows: g.numRows, ...(from && to ? { from, to } : {}) };
  });
  const targets = input.targetColumns.filter((c) => leafIndex.has(c));

  return {
    pair: input.pair,
    createdAt: input.createdAt,
    ...(input.execution ? { execution: input.execution } : {}),
    file: input.file,
    shape: {
      rows: input.validation.rows,
      columns: input.validation.columns,
      features: input.validation.features,
      tables: input.tables.length,
      rowGroups: stats.rowGroups.length,
      columnsByFamily: [
        { family: "key and targets", tables: 1, columns: 1 + targets.length },
        ...familyNames.map((f) => ({ family: f, tables: families.get(f)!.tables, columns: families.get(f)!.columns.length })),
      ],
    },
    stages,
    extraction: {
      progress: finishes.map((x, i) => ({ x, y: i + 1 })),
      reusedTables: input.tables.length - timed.length,
      slowest,
    },
    rowGroups,
    nullHeat: { families: familyNames, values: familyNames.map((f) => nullShare(stats, families.get(f)!.columns)) },
    targetCoverage: {
      columns: targets,
      values: targets.map((c) => nullShare(stats, [leafIndex.get(c)!]).map((share) => 1 - share)),
    },
    validation: input.validation,
    ...(input.schemaChange ? { schemaChange: input.schemaChange } : {}),
  };
}
