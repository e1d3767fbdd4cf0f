// The warehouse port: what the job needs from BigQuery (production) or DuckDB (embedded), split
// by role, as Malloy splits its connections (InfoConnection / Connection / StreamingConnection):
// - WarehouseDiscovery, in the main thread: what the tables are, their versions, what reading
//   them costs, whether the job may read them. One per run (src/main.ts opens it).
// - WarehouseExtraction, in pool workers: a table's rows as a frame. A worker receives a small
//   serialisable task (src/extract/task.ts) and opens its own extraction from the task's
//   SourceSettings (openExtraction, src/warehouse/extraction.ts), so no connection crosses threads.
// test/contract/warehouse.contract.test.ts holds every adapter to both roles.
import type pl from "nodejs-polars";

export interface ColumnInfo {
  name: string;
  /** The warehouse's own type name, e.g. "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "FLOAT64", "DOUBLE". */
  type: string;
}

export interface TableInfo {
  dataset: string;
  name: string;
  /** Every column in ordinal order, the key included. */
  columns: ColumnInfo[];
  /** Row count from the warehouse's table metadata, when it has one (for the memory plan). */
  rows?: number;
}

/** The rows the job reads of every table: `interval_time` in [dateFrom, dateTo], UTC dates. */
export interface DateRange {
  dateFrom: string;
  dateTo: string;
}

/**
 * The key types a warehouse stores as timestamps, by its own type names: `utc` ones are instants;
 * `zoneless` ones (DuckDB TIMESTAMP, BigQuery DATETIME) carry no time zone and are read as UTC.
 */
export interface KeyTypes {
  utc: readonly string[];
  zoneless: readonly string[];
}

export const DUCKDB_KEY_TYPES: KeyTypes = { utc: ["TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"], zoneless: ["TIMESTAMP", "DATETIME"] };
export const BIGQUERY_KEY_TYPES: KeyTypes = { utc: ["TIMESTAMP"], zoneless: ["DATETIME"] };

export interface TableVersion {
  version: string;
  /** The table's logical bytes where the warehouse tells (BigQuery: INFORMATION_SCHEMA.PARTITIONS), at most what reading all of it scans. */
  bytes?: number;
  /** The table's rows where the same metadata tells (BigQuery: INFORMATION_SCHEMA.PARTITIONS total_rows). */
  rows?: number;
}

/** What reading some tables will scan, found before any is read (PLAN_ONLY). */
export interface ReadEstimate {
  /** Bytes each read scans, in the order asked. */
  bytes: number[];
  /** How the figures were found, for a person ("dry runs of ...", "estimate: ..."). */
  method: string;
  /** True when the warehouse itself answered (BigQuery dry runs); false for an estimate of ours. */
  measured: boolean;
  /** Dry-run query jobs sent: BigQuery stores none and bills none. */
  dryRuns: number;
}

/** The main thread's half of the port: discovery, versions, the plan's cost, the read check. */
export interface WarehouseDiscovery {
  /** How this warehouse names timestamp types (discovery classifies every table's key with them). */
  readonly keyTypes: KeyTypes;
  /** Checks the warehouse can be reached and holds data; throws a JobError naming the fix otherwise. */
  preflight(datasets: readonly string[]): Promise<void>;
  /** All tables of a dataset with their columns: one INFORMATION_SCHEMA query for tables, one for columns. */
  listTables(dataset: string): Promise<TableInfo[]>;
  /**
   * Each named table's version: a string that changes whenever the rows the job reads may have
   * changed (BigQuery: its last modification time; DuckDB: a signature of its rows in `range`).
   * Part fingerprints cover it, so a table rebuilt under the same name is extracted again.
   * A table the warehouse cannot version (an empty partitioned table) is absent from the map.
   */
  tableVersions(dataset: string, tables: readonly string[], range: DateRange): Promise<Map<string, TableVersion>>;
  /** What the reads of these tables will scan, without reading a row: BigQuery dry runs, DuckDB an estimate. */
  estimateReads(reads: readonly TableQuery[]): Promise<ReadEstimate>;
  /**
   * The permission a read needs beyond discovery's, checked the way the run's first read meets it
   * (BigQuery: a Storage Read session created on the table, none of its rows read; DuckDB: none).
   * Throws a JobError naming the role to grant.
   */
  checkReadAccess(read: TableQuery): Promise<void>;
  close(): Promise<void>;
}

/** The discovery half under the name the stages, the fault decorators and the tests use. */
export type Warehouse = WarehouseDiscovery;

/** One table's rows as an extraction read them, and how the read went. */
export interface ExtractedRows {
  /**
   * The key (Datetime(us, UTC), or zone-less for a zone-less key), then each mapped column under
   * its output name, in the query's order: the same dtypes from every adapter.
   */
  frame: pl.DataFrame;
  /** Requests retried and streams resumed on the way (0 where the adapter has nothing to retry). */
  retries: number;
  /** How the read went, where the warehouse reports it (BigQuery: its route, bytes and streams). */
  read?: ReadFigures;
}

/**
 * A pool worker's half of the port: the rows of one table. Nothing is checked here (key type,
 * nulls, repeats, order): the worker checks every adapter's frame the same way
 * (checkedKeyFrame), so a bad table fails with the same reason whichever warehouse holds it.
 * An extraction keeps its connections for the worker thread's life; there is nothing to close.
 */
export interface WarehouseExtraction {
  /** The target's rows in key order: the date range, the not-null rule, the first ROW_LIMIT. */
  readTarget(query: TableQuery): Promise<ExtractedRows>;
  /** One slice's rows: keys above `afterKey` through `throughKey` in the date range, in any order. */
  readSlice(query: TableQuery, slice: SliceBounds): Promise<ExtractedRows>;
}

/** A column read from the source table, the name it gets in the training file, and its warehouse type. */
export interface ColumnMapping {
  source: string;
  target: string;
  type: string;
}

/** Backoff for the BigQuery adapter's own retries (a plain object, so it crosses threads). */
export interface GcpRetrySettings {
  /** Total tries of one request, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/** Where and how a worker reaches BigQuery; the same fields as the config's `gcp` block. */
export interface GcpTaskSettings {
  /** Project that runs (and is billed for) the query jobs and read sessions. */
  project: string;
  /** BigQuery location of the datasets (US, us-central1, ...); undefined lets BigQuery infer it. */
  location?: string | undefined;
  /** BigQuery REST endpoint override, e.g. http://127.0.0.1:9050 for a stand-in. */
  bigqueryEndpoint?: string | undefined;
  /** Storage Read API (gRPC) endpoint override; http:// means plaintext, https:// TLS. */
  storageReadEndpoint?: string | undefined;
  /** How long one query job may run before it is cancelled and the table fails (retryable). */
  queryTimeoutMs: number;
  retry?: GcpRetrySettings | undefined;
  /** A ReadRows stream silent for this long is cancelled and resumed from its offset. */
  readIdleTimeoutMs?: number | undefined;
  /**
   * BQ_READ_ROUTE: "table" (default) reads each table through a Storage Read session on the table
   * itself, no query job, except with ROW_LIMIT (the first N rows by time need ORDER BY ... LIMIT);
   * "query" reads every table through a query job whose result is read back.
   */
  readRoute?: BigQueryReadRoute | undefined;
}

export type BigQueryReadRoute = "table" | "query";

/** The rows of one table that a task reads: the date range, the target's row rule, a row limit. */
export interface TableQuery {
  dataset: string;
  table: string;
  columns: ColumnMapping[];
  dateFrom: string;
  dateTo: string;
  /** The first N rows by time only (ROW_LIMIT). */
  rowLimit: number | undefined;
  /** Only rows where this column is not null (the target table's row rule). */
  notNullColumn: string | undefined;
  /** The key has no time zone (BigQuery DATETIME, DuckDB TIMESTAMP): read as UTC. */
  zonelessKey?: true;
}

/** A run of whole output row groups, and the key range whose rows it reads. */
export interface SliceBounds {
  /** Output row groups [firstRowGroup, endRowGroup). */
  firstRowGroup: number;
  endRowGroup: number;
  /** Target rows [firstRow, endRow). */
  firstRow: number;
  endRow: number;
  /**
   * Keys read: above `afterKey` (none for the first slice: from DATE_FROM) up to and including
   * `throughKey` (none for the last slice: through DATE_TO). The slices of a table partition its
   * date range, so every row is read once and a repeated key is found wherever it is.
   */
  afterKey: bigint | undefined;
  throughKey: bigint | undefined;
}

/** How a BACKEND=gcp read went: its route, the bytes its read session estimated it scans, its streams. */
export interface ReadFigures {
  route: "table" | "query";
  bytesScanned: number;
  streams: number;
}
