// The embedded default warehouse: a DuckDB database file whose schemas stand for the BigQuery
// datasets. Discovery reads information_schema exactly as production reads INFORMATION_SCHEMA.
import { existsSync, statSync } from "node:fs";
import { DuckDBInstance, type DuckDBConnection, type DuckDBResultReader } from "@duckdb/node-api";
import { SIGNATURE_CONNECTIONS, limiter } from "../concurrency.ts";
import { SIGNATURE_MEMORY_BYTES } from "../memory-plan.ts";
import { JobError } from "../errors.ts";
import { KEY_COLUMN } from "../constants.ts";
import { nextDay, quoteIdent, quoteString } from "../sql.ts";
import { type TableQuery, DUCKDB_KEY_TYPES, type DateRange, type ReadEstimate, type TableInfo, type WarehouseDiscovery, type TableVersion } from "./port.ts";
import { BYTES_PER_VALUE } from "../parts/plan.ts";

function checkWarehouseFile(path: string): void {
  if (!existsSync(path)) {
    throw new JobError(`warehouse file ${path} does not exist`, {
      reason: "warehouse-missing",
      fix: "set WAREHOUSE to your DuckDB warehouse file, or build the sample one with `npm run sample` (npm start does this for the demo)",
    });
  }
  if (statSync(path).size === 0) {
    throw new JobError(`warehouse file ${path} is empty`, {
      reason: "warehouse-empty",
      fix: "rebuild it with `npm run sample`, or point WAREHOUSE at a populated DuckDB file",
    });
  }
}

/** Discovery reads information_schema only: one thread and a small buffer pool, never DuckDB's default of 80 % of RAM. */
const DISCOVERY_MEMORY_LIMIT = "128MiB";
/**
 * While the table versions are computed, each signature connection scans every column of a table
 * (a wide one at full shape needs ~100 MiB); the instance's pool is raised for them, then put back.
 */
const SIGNATURES_MEMORY_LIMIT = `${Math.round((SIGNATURE_CONNECTIONS * SIGNATURE_MEMORY_BYTES) / 1024 ** 2)}MiB`;

async function openReadOnly(path: string): Promise<{ instance: DuckDBInstance; connection: DuckDBConnection }> {
  checkWarehouseFile(path);
  let instance: DuckDBInstance;
  try {
    instance = await DuckDBInstance.create(path, { access_mode: "READ_ONLY", threads: "1", memory_limit: DISCOVERY_MEMORY_LIMIT });
  } catch (err) {
    throw new JobError(`warehouse file ${path} cannot be opened as a DuckDB database (${(err as Error).message})`, {
      reason: "warehouse-unreadable",
      fix: "check that WAREHOUSE names a DuckDB file (build one with `npm run sample`)",
      cause: err,
    });
  }
  const connection = await instance.connect();
  await connection.run("SET TimeZone = 'UTC'");
  return { instance, connection };
}

/**
 * A DuckDB table has no modification time, so its version is a signature of the rows the job
 * reads: their count and the XOR of every row's hash (`hash(t)` hashes the whole row as a struct,
 * so a changed value, a NULL becoming a value or the reverse, an added or removed row all change
 * it). One aggregate query per table.
 */
export function signatureSql(dataset: string, table: string, range: DateRange): string {
  const key = quoteIdent(KEY_COLUMN);
  return `SELECT count(*) AS n, bit_xor(hash(t)) AS h FROM ${quoteIdent(dataset)}.${quoteIdent(table)} AS t WHERE ${key} >= CAST(${quoteString(range.dateFrom)} AS TIMESTAMPTZ) AND ${key} < CAST(${quoteString(nextDay(range.dateTo))} AS TIMESTAMPTZ)`;
}

export interface DuckDBWarehouseOptions {
  /** Once aborted (SIGTERM), table versions stop between two tables. */
  signal?: AbortSignal | undefined;
}

export class DuckDBWarehouse implements WarehouseDiscovery {
  readonly keyTypes = DUCKDB_KEY_TYPES;
  private readonly instance: DuckDBInstance;
  private readonly connection: DuckDBConnection;
  readonly path: string;
  private readonly opts: DuckDBWarehouseOptions;
  /** At most SIGNATURE_CONNECTIONS table signatures at once, across calls. */
  private readonly signatureSlot = limiter(SIGNATURE_CONNECTIONS);
  private readonly idleSignatureConnections: DuckDBConnection[] = [];
  /** tableVersions calls running: the pool stays raised until the last one ends. */
  private signatureCalls = 0;

  private constructor(instance: DuckDBInstance, connection: DuckDBConnection, path: string, opts: DuckDBWarehouseOptions) {
    this.instance = instance;
    this.connection = connection;
    this.path = path;
    this.opts = opts;
  }

  static async open(path: string, opts: DuckDBWarehouseOptions = {}): Promise<DuckDBWarehouse> {
    const { instance, connection } = await openReadOnly(path);
    return new DuckDBWarehouse(instance, connection, path, opts);
  }

  /** One information_schema query. Not retried here: src/warehouse/retrying.ts wraps the warehouse. */
  private discoveryQuery(_label: string, sql: string, params?: Record<string, string>): Promise<DuckDBResultReader> {
    return this.connection.runAndReadAll(sql, params);
  }

  async preflight(datasets: readonly string[]): Promise<void> {
    const reader = await this.discoveryQuery(
      "information_schema.tables (all datasets)",
      "SELECT table_schema, count(*) AS n FROM information_schema.tables GROUP BY table_schema",
    );
    const counts = new Map(reader.getRowObjectsJS().map((r) => [text(r.table_schema), Number(r.n)]));
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    if (total === 0) {
      throw new JobError(`warehouse ${this.path} holds no tables`, {
        reason: "warehouse-empty",
        fix: "load the feature and target tables into it, or build the sample with `npm run sample`",
      });
    }
    for (const dataset of datasets) {
      if (!counts.has(dataset)) {
        throw new JobError(`dataset ${dataset} not found in warehouse ${this.path} (it has: ${[...counts.keys()].sort().join(", ")})`, {
          reason: "dataset-missing",
          fix: "set FEATURES_DATASET / TARGETS_DATASET to datasets that exist",
        });
      }
    }
  }

  async listTables(dataset: string): Promise<TableInfo[]> {
    const tables = await this.discoveryQuery(
      `${dataset}.information_schema.tables`,
      `SELECT t.table_name, d.estimated_size AS row_count
       FROM information_schema.tables t
       LEFT JOIN duckdb_tables() d ON d.schema_name = t.table_schema AND d.table_name = t.table_name AND d.database_name = t.table_catalog
       WHERE t.table_schema = $dataset AND t.table_type = 'BASE TABLE' ORDER BY t.table_name`,
      { dataset },
    );
    const columns = await this.discoveryQuery(
      `${dataset}.information_schema.columns`,
      "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = $dataset ORDER BY table_name, ordinal_position",
      { dataset },
    );
    const byTable = new Map<string, TableInfo>();
    for (const row of tables.getRowObjectsJS()) {
      const name = text(row.table_name);
      byTable.set(name, { dataset, name, columns: [], ...(row.row_count === null ? {} : { rows: Number(row.row_count) }) });
    }
    for (const row of columns.getRowObjectsJS()) {
      byTable.get(text(row.table_name))?.columns.push({ name: text(row.column_name), type: text(row.data_type) });
    }
    return [...byTable.values()];
  }

  /**
   * One signature query per table, on at most SIGNATURE_CONNECTIONS connections whatever the
   * number of calls at once (the stage asks for the features' and the target's together), with
   * the instance's pool raised while any call runs.
   */
  async tableVersions(dataset: string, tables: readonly string[], range: DateRange): Promise<Map<string, TableVersion>> {
    if (this.signatureCalls++ === 0) await this.connection.run(`SET memory_limit = '${SIGNATURES_MEMORY_LIMIT}'`);
    try {
      const versions = new Map<string, TableVersion>();
      // Every table queued at once; onSignatureConnection lets SIGNATURE_CONNECTIONS run.
      await Promise.all(
        tables.map((table) =>
          this.onSignatureConnection(async (connection) => {
            // A SIGTERM during discovery stops between two tables, not after all of them.
            if (this.opts.signal?.aborted) throw this.opts.signal.reason;
            const reader = await connection.runAndReadAll(signatureSql(dataset, table, range));
            const [n, h] = reader.getRowsJS()[0] ?? [0, null];
            versions.set(table, { version: `rows=${BigInt(n as bigint | number).toString()};xor=${h === null ? "0" : BigInt(h as bigint).toString(16)}` });
          }),
        ),
      );
      return versions;
    } finally {
      if (--this.signatureCalls === 0) await this.connection.run(`SET memory_limit = '${DISCOVERY_MEMORY_LIMIT}'`);
    }
  }

  /** Runs `fn` on one of the signature connections (made on first use, kept until close). */
  private onSignatureConnection<T>(fn: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
    return this.signatureSlot(async () => {
      let connection = this.idleSignatureConnections.pop();
      if (!connection) {
        connection = await this.instance.connect();
        // The date range's bounds are UTC days, and a key without a time zone is read as UTC.
        await connection.run("SET TimeZone = 'UTC'");
      }
      try {
        return await fn(connection);
      } finally {
        this.idleSignatureConnections.push(connection);
      }
    });
  }

  /**
   * An estimate, not a measurement: each table's rows (DuckDB's own estimated_size, the whole
   * table, capped by ROW_LIMIT) x the columns read (the key included) x 8 bytes a value. It reads
   * no row: the catalogue only, one query, whatever the table count. Nothing is billed locally.
   */
  async estimateReads(reads: readonly TableQuery[]): Promise<ReadEstimate> {
    const reader = await this.discoveryQuery("duckdb_tables() (row estimates)", "SELECT schema_name, table_name, estimated_size FROM duckdb_tables()");
    const rows = new Map(reader.getRowObjectsJS().map((r) => [`${text(r.schema_name)}.${text(r.table_name)}`, Number(r.estimated_size ?? 0)]));
    const bytes = reads.map(
      (r) => Math.min(rows.get(`${r.dataset}.${r.table}`) ?? 0, r.rowLimit ?? Number.POSITIVE_INFINITY) * (r.columns.length + 1) * BYTES_PER_VALUE,
    );
    return { bytes, method: `estimate: rows (DuckDB's estimated_size) x columns read x ${BYTES_PER_VALUE} bytes`, measured: false, dryRuns: 0 };
  }

  /** Nothing beyond discovery's: the file is open read-only, and every table it lists can be read. */
  async checkReadAccess(_read: TableQuery): Promise<void> {}

  async close(): Promise<void> {
    for (const c of this.idleSignatureConnections.splice(0)) c.closeSync();
    this.connection.closeSync();
    this.instance.closeSync();
  }
}

/** A name or type from information_schema: always text there. */
function text(value: unknown): string {
  if (typeof value !== "string") throw new Error(`information_schema gave ${typeof value} where a name or type was expected`);
  return value;
}
