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

/** Everything a worker needs to extract one table into one checkpoint file. */
export interface ExtractTask {
  backend: "local";
  /** DuckDB database file (local backend). */
  warehouse: string;
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
}

export interface ExtractResult {
  table: string;
  rows: number;
  bytes: number;
  seconds: number;
  reused: boolean;
}
