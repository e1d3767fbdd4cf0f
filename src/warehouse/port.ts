// The warehouse port: what the stages need from BigQuery (production) or DuckDB (embedded).
// Discovery runs in the main thread; extraction runs in pool workers, so it is described by a
// small serialisable task that each worker executes against its own connection.

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

export interface Warehouse {
  /** Checks the warehouse can be reached and holds data; throws a JobError naming the fix otherwise. */
  preflight(datasets: readonly string[]): Promise<void>;
  /** All tables of a dataset with their columns: one INFORMATION_SCHEMA query for tables, one for columns. */
  listTables(dataset: string): Promise<TableInfo[]>;
  close(): Promise<void>;
}

/** A column read from the source table and the name it gets in the checkpoint. */
export interface ColumnMapping {
  source: string;
  target: string;
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
}

/** Everything a worker needs to extract one table into one checkpoint file. */
export interface ExtractTask {
  backend: "local" | "gcp";
  /** DuckDB database file (local backend; ignored by the gcp backend). */
  warehouse: string;
  /** Required when backend is "gcp". */
  gcp?: GcpTaskSettings | undefined;
  dataset: string;
  table: string;
  columns: ColumnMapping[];
  dateFrom: string;
  dateTo: string;
  rowLimit: number | undefined;
  /** Only rows where this column is not null (the target table's row rule). */
  notNullColumn: string | undefined;
  checkpointPath: string;
  /** Identifies the query; a checkpoint carrying the same fingerprint can be reused. */
  fingerprint: string;
  /** FAULT_RATE (testing only): this attempt's warehouse call fails transiently with that probability. */
  fault?: { rate: number; seed: number; attempt: number } | undefined;
}

export interface ExtractResult {
  table: string;
  rows: number;
  bytes: number;
  seconds: number;
  reused: boolean;
  /** Requests retried and streams resumed on the way (gcp backend). */
  retries?: number;
}
