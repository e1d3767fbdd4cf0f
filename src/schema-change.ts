// Schema drift: how the file about to be published differs from the one already in the bucket,
// told from the two manifests (columns added, removed or retyped; tables that appeared or
// disappeared; the row count's change). Pure functions over plain data; the upload stage reads the
// previous manifest and decides, from SCHEMA_CHANGE, whether to publish.
import { schemaText } from "./parquet/index.ts";

export const SCHEMA_CHANGE_POLICIES = ["allow", "warn", "fail"] as const;
export type SchemaChangePolicy = (typeof SCHEMA_CHANGE_POLICIES)[number];

/** Per table (`<dataset>.<table>`, file order), its columns in the file and their parquet types (`DOUBLE`, `INT64 TIMESTAMP(MICROS,UTC)`, ...). */
export type FileSchema = Record<string, Record<string, string>>;

/** A column whose type differs between the two files. */
export interface Retyped {
  column: string;
  table: string;
  from: string;
  to: string;
}

export interface SchemaChange {
  policy: SchemaChangePolicy;
  /** The file in the bucket before this run; null on a first build. */
  previous: { rows: number | null; columns: number | null; generation: string | null; createdAt: string | null } | null;
  /** Why columns could not be compared (no previous file, or a manifest written before `schema`); absent when they were. */
  notCompared?: string;
  added: string[];
  removed: string[];
  retyped: Retyped[];
  tablesAdded: string[];
  tablesRemoved: string[];
  /** Set when the manifest describes another generation than the file in the bucket (a run that published but died before its manifest): compared with the manifest all the same. */
  staleManifest?: string;
  /** This file's rows minus the previous file's; null when there is nothing to compare with. */
  rowsChange: number | null;
}

/** The schema of the file from its parts' footers: each table's columns once, in file order. */
export function fileSchema(parts: ReadonlyArray<{ table: number; label: string; footerThrift: Uint8Array }>): FileSchema {
  const schema: FileSchema = {};
  for (const part of [...parts].sort((a, b) => a.table - b.table)) {
    const columns = (schema[part.label] ??= {});
    for (const line of schemaText(part.footerThrift).split("\n")) {
      if (line === "") continue;
      const [column, physical, logical] = line.split("\t") as [string, string, string];
      columns[column] ??= logical === "-" ? physical : `${physical} ${logical}`;
    }
  }
  return schema;
}

/** What a previous manifest offers to compare with (any version: fields it lacks are null). */
export interface PreviousManifest {
  rows?: unknown;
  columns?: unknown;
  tables?: { target?: { table?: unknown }; features?: Array<{ table?: unknown }> };
  query?: { FEATURES_DATASET?: unknown; TARGETS_DATASET?: unknown };
  run?: { createdAt?: unknown };
  /** `file.schema`: each table's columns and types (absent from manifests written before it). */
  file?: { generation?: unknown; schema?: unknown };
}

const isSchema = (v: unknown): v is FileSchema =>
  typeof v === "object" &&
  v !== null &&
  !Array.isArray(v) &&
  Object.values(v).every((c: unknown) => typeof c === "object" && c !== null && Object.values(c).every((t) => typeof t === "string"));

/**
 * Compares the file about to be published with the previous manifest (undefined: none in the
 * bucket). A manifest without `schema` (written by an earlier version) still gives its tables and
 * rows; its columns are not compared, and `notCompared` says so.
 */
export function compareSchemas(
  policy: SchemaChangePolicy,
  current: { rows: number; schema: FileSchema },
  previous: PreviousManifest | undefined,
): SchemaChange {
  const none = { added: [], removed: [], retyped: [], tablesAdded: [], tablesRemoved: [] };
  if (!previous) return { policy, previous: null, notCompared: "no previous file in the bucket (first build)", ...none, rowsChange: null };
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const str = (v: unknown) => (typeof v === "string" ? v : null);
  const before = {
    rows: num(previous.rows),
    columns: num(previous.columns),
    generation: str(previous.file?.generation),
    createdAt: str(previous.run?.createdAt),
  };
  const rowsChange = before.rows === null ? null : current.rows - before.rows;
  const tablesNow = Object.keys(current.schema);
  if (!isSchema(previous.file?.schema)) {
    // Manifests name tables `<dataset>.<table>` (a name with a '.' is refused at discovery); should
    // one name a bare table, its query settings give the dataset.
    const label = (dataset: unknown, table: unknown) =>
      typeof table !== "string" ? [] : [table.includes(".") || typeof dataset !== "string" ? table : `${dataset}.${table}`];
    const listed = [
      ...label(previous.query?.TARGETS_DATASET, previous.tables?.target?.table),
      ...(previous.tables?.features ?? []).flatMap((t) => label(previous.query?.FEATURES_DATASET, t.table)),
    ];
    const was = new Set(listed);
    return {
      policy,
      previous: before,
      notCompared: "the previous manifest has no schema (written by an earlier version): columns not compared",
      ...none,
      tablesAdded: listed.length === 0 ? [] : tablesNow.filter((t) => !was.has(t)),
      tablesRemoved: listed.filter((t) => !(t in current.schema)),
      rowsChange,
    };
  }
  const old = previous.file.schema;
  const columnsOf = (s: FileSchema) =>
    new Map(Object.entries(s).flatMap(([table, cols]) => Object.entries(cols).map(([column, type]) => [column, { table, type }] as const)));
  const was = columnsOf(old);
  const now = columnsOf(current.schema);
  return {
    policy,
    previous: before,
    added: [...now.keys()].filter((c) => !was.has(c)),
    removed: [...was.keys()].filter((c) => !now.has(c)),
    retyped: [...now].flatMap(([column, { table, type }]) => {
      const from = was.get(column)?.type;
      return from !== undefined && from !== type ? [{ column, table, from, to: type }] : [];
    }),
    tablesAdded: tablesNow.filter((t) => !(t in old)),
    tablesRemoved: Object.keys(old).filter((t) => !(t in current.schema)),
    rowsChange,
  };
}

/** True when the columns or tables differ (a row count's change alone is not drift). */
export function hasDrift(change: SchemaChange): boolean {
  return change.added.length + change.removed.length + change.retyped.length + change.tablesAdded.length + change.tablesRemoved.length > 0;
}

const FIRST_NAMES = 5;

/** One line for a person: counts, then the first few names of each kind. */
export function describeSchemaChange(change: SchemaChange): string {
  const list = (names: readonly string[]) =>
    `${names.slice(0, FIRST_NAMES).join(", ")}${names.length > FIRST_NAMES ? `, ... (${names.length - FIRST_NAMES} more)` : ""}`;
  const parts: string[] = [];
  if (change.tablesAdded.length) parts.push(`${change.tablesAdded.length} tables added (${list(change.tablesAdded)})`);
  if (change.tablesRemoved.length) parts.push(`${change.tablesRemoved.length} tables removed (${list(change.tablesRemoved)})`);
  if (change.added.length) parts.push(`${change.added.length} columns added (${list(change.added)})`);
  if (change.removed.length) parts.push(`${change.removed.length} columns removed (${list(change.removed)})`);
  if (change.retyped.length) parts.push(`${change.retyped.length} columns retyped (${list(change.retyped.map((r) => `${r.column} ${r.from} -> ${r.to}`))})`);
  if (parts.length === 0) parts.push("no columns or tables changed");
  if (change.rowsChange !== null) parts.push(`rows ${change.rowsChange >= 0 ? "+" : ""}${change.rowsChange}`);
  if (change.notCompared) parts.push(change.notCompared);
  if (change.staleManifest) parts.push(change.staleManifest);
  return parts.join("; ");
}
