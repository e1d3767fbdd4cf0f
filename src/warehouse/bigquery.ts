// The production warehouse: BigQuery. Discovery runs two INFORMATION_SCHEMA queries per dataset
// (tables, then columns in ordinal order) as query jobs; extraction runs in pool workers
// (bigquery-extract.ts) and reads the tables through the Storage Read API (on the tables
// themselves, or on a query's result with ROW_LIMIT). Errors leave as
// JobErrors that name the dataset, the table or the missing role (../gcp/errors.ts).
import { BigQuery, BigQueryTimestamp, type DatasetResource } from "@google-cloud/bigquery";
import type { Logger } from "../log.ts";
import { JobError } from "../errors.ts";
import { describeFault, toJobError, type FailureContext } from "../gcp/errors.ts";
import { withRetry } from "../retry.ts";
import { createBigQueryClient, retryPolicy, type BigQueryClientOptions, type RetryNotice } from "./bigquery-clients.ts";
import {
  type TableQuery,
  BIGQUERY_KEY_TYPES,
  type DateRange,
  type GcpRetrySettings,
  type ReadEstimate,
  type TableInfo,
  type WarehouseDiscovery,
  type TableVersion,
} from "./port.ts";
import { dryRunQuery, fetchAllRows, quoteBigQueryIdent, runQueryJob } from "./bigquery-query.ts";
import { DRY_RUNS_AT_ONCE, READ_STREAMS_PER_SESSION, mapLimited } from "../concurrency.ts";
import { bigQueryExtractionSql, tableRowRestriction } from "./bigquery-sql.ts";
import { KEY_COLUMN } from "../constants.ts";

/** INFORMATION_SCHEMA.PARTITIONS reads at most 1,000 tables a query; larger lists are split. */
export const PARTITIONS_TABLES_PER_QUERY = 1000;

export { closeWorkerClients } from "./bigquery-clients.ts";

export interface BigQueryWarehouseOptions {
  project: string;
  location?: string | undefined;
  /** REST endpoint override (a stand-in); undefined means Google's. */
  apiEndpoint?: string | undefined;
  /** Defaults to a placeholder-token client for loopback http endpoints, else ADC. */
  authClient?: BigQueryClientOptions["authClient"];
  /** Storage Read API endpoint override (a stand-in), for checkReadAccess; undefined means Google's. */
  storageReadEndpoint?: string | undefined;
  queryTimeoutMs: number;
  retry?: GcpRetrySettings | undefined;
  log?: Pick<Logger, "warn"> | undefined;
}

export class BigQueryWarehouse implements WarehouseDiscovery {
  readonly keyTypes = BIGQUERY_KEY_TYPES;
  readonly project: string;
  readonly location: string | undefined;
  private readonly bigquery: BigQuery;
  private readonly opts: BigQueryWarehouseOptions;

  constructor(opts: BigQueryWarehouseOptions) {
    this.opts = opts;
    this.project = opts.project;
    this.location = opts.location;
    this.bigquery = createBigQueryClient({ project: opts.project, location: opts.location, apiEndpoint: opts.apiEndpoint, authClient: opts.authClient });
  }

  private readonly onRetry = (n: RetryNotice): void => {
    this.opts.log?.warn(
      { api: n.api, call: n.what, attempt: n.attempt, delayMs: n.delayMs, error: describeFault(n.error, n.api).message },
      `retrying ${n.what} in ${n.delayMs} ms after: ${describeFault(n.error, n.api).message}`,
    );
  };

  private context(action: string, dataset: string): FailureContext {
    return { action, project: this.project, location: this.location, dataset };
  }

  /**
   * Each dataset must exist and be readable (datasets.get needs bigquery.datasets.get, which
   * roles/bigquery.dataViewer grants). The query-job permission surfaces, with the role to
   * grant, on the first query of listTables; the read-session one on the target's read.
   */
  async preflight(datasets: readonly string[]): Promise<void> {
    for (const dataset of datasets) {
      const ctx = this.context(`checking dataset ${this.project}:${dataset}`, dataset);
      let location: string | undefined;
      try {
        const [meta] = (await withRetry(
          () => this.bigquery.dataset(dataset).getMetadata(),
          retryPolicy(this.opts.retry, "bigquery", "datasets.get", this.onRetry),
        )) as [DatasetResource, unknown];
        location = meta.location ?? undefined;
      } catch (err) {
        throw toJobError(err, "bigquery", ctx);
      }
      if (this.location && location && location.toLowerCase() !== this.location.toLowerCase()) {
        throw new JobError(`dataset ${this.project}:${dataset} is in location ${location}, but queries run in ${this.location}`, {
          reason: "bigquery-location-mismatch",
          fix: `set BQ_LOCATION=${location} (all datasets the job reads must share one location)`,
        });
      }
    }
  }

  /** One INFORMATION_SCHEMA.TABLES and one INFORMATION_SCHEMA.COLUMNS query, whatever the table count. */
  async listTables(dataset: string): Promise<TableInfo[]> {
    const ds = quoteBigQueryIdent(`${this.project}.${dataset}`);
    const tablesSql = `SELECT table_name FROM ${ds}.INFORMATION_SCHEMA.TABLES WHERE table_type = 'BASE TABLE' ORDER BY table_name`;
    // is_hidden drops pseudo-columns such as _PARTITIONTIME of ingestion-time partitioned tables.
    const columnsSql = `SELECT table_name, column_name, data_type FROM ${ds}.INFORMATION_SCHEMA.COLUMNS WHERE is_hidden = 'NO' ORDER BY table_name, ordinal_position`;
    const [tables, columns] = await Promise.all([
      this.rows(tablesSql, this.context(`listing the tables of ${this.project}:${dataset}`, dataset)),
      this.rows(columnsSql, this.context(`listing the columns of ${this.project}:${dataset}`, dataset)),
    ]);
    const byTable = new Map<string, TableInfo>();
    // Row counts stay unknown: TABLE_STORAGE is a project-and-region view that a dataset-level
    // reader usually cannot query, and the memory plan falls back to ROW_LIMIT without them.
    for (const row of tables) byTable.set(String(row.table_name), { dataset, name: String(row.table_name), columns: [] });
    for (const row of columns) byTable.get(String(row.table_name))?.columns.push({ name: String(row.column_name), type: String(row.data_type) });
    return [...byTable.values()];
  }

  /**
   * Each table's last modification time, from INFORMATION_SCHEMA.PARTITIONS: one query for up to
   * 1,000 tables instead of a tables.get call each. A non-partitioned table has one row (partition
   * id NULL); a partitioned one a row per partition, and the latest of them is the table's. The
   * whole table counts, not only the date range: a rewrite elsewhere re-extracts needlessly, which
   * is safe. An empty partitioned table has no row and no version.
   */
  async tableVersions(dataset: string, tables: readonly string[], _range: DateRange): Promise<Map<string, TableVersion>> {
    const ds = quoteBigQueryIdent(`${this.project}.${dataset}`);
    const sql = `SELECT table_name, MAX(last_modified_time) AS last_modified_time, SUM(total_logical_bytes) AS total_logical_bytes, SUM(total_rows) AS total_rows FROM ${ds}.INFORMATION_SCHEMA.PARTITIONS WHERE table_name IN UNNEST(@tables) GROUP BY table_name`;
    const versions = new Map<string, TableVersion>();
    // (An empty list would also be refused by the client: it cannot infer an empty array's type.)
    for (let i = 0; i < tables.length; i += PARTITIONS_TABLES_PER_QUERY) {
      const chunk = tables.slice(i, i + PARTITIONS_TABLES_PER_QUERY);
      const rows = await this.rows(sql, this.context(`reading the modification times of ${chunk.length} tables of ${this.project}:${dataset}`, dataset), {
        tables: [...chunk],
      });
      for (const row of rows) {
        const modified = row.last_modified_time;
        if (modified === null || modified === undefined) continue;
        // The client returns TIMESTAMP as a BigQueryTimestamp ({ value: ISO string }).
        const iso =
          modified instanceof BigQueryTimestamp
            ? modified.value
            : typeof modified === "string" || typeof modified === "number"
              ? String(modified)
              : JSON.stringify(modified);
        const bytes = Number(row.total_logical_bytes);
        const rows = Number(row.total_rows);
        versions.set(row.table_name as string, {
          version: `modified=${iso}`,
          ...(Number.isFinite(bytes) && row.total_logical_bytes !== null ? { bytes } : {}),
          ...(Number.isFinite(rows) && row.total_rows !== null ? { rows } : {}),
        });
      }
    }
    return versions;
  }

  /**
   * A dry run of each table's extraction query (the query route's SQL; the table route's read
   * session selects the same columns of the same rows, so it scans the same bytes), at most
   * DRY_RUNS_AT_ONCE at once. One dry run per table rather than one for many: the tables'
   * column lists differ (no UNION ALL), and a wrapper that joins them (SELECT COUNT(*) FROM
   * (...), (...)) lets BigQuery prune the columns the outer query does not use, reporting
   * less than the reads scan. Per table, each figure is exact for its read.
   */
  async estimateReads(reads: readonly TableQuery[]): Promise<ReadEstimate> {
    const bytes = await mapLimited(reads, DRY_RUNS_AT_ONCE, (read) => {
      const env = {
        retry: this.opts.retry,
        ctx: { ...this.context(`dry-running the read of ${this.project}.${read.dataset}.${read.table}`, read.dataset), table: read.table },
        onRetry: this.onRetry,
      };
      return dryRunQuery(
        this.bigquery,
        {
          sql: bigQueryExtractionSql(read, this.project),
          params: { date_from: BigQuery.date(read.dateFrom), date_to: BigQuery.date(read.dateTo) },
          jobPrefix: `bqx_plan_${read.table}`,
        },
        env,
      );
    });
    return { bytes, method: "BigQuery dry runs of the extraction queries (statistics.totalBytesProcessed)", measured: true, dryRuns: reads.length };
  }

  /**
   * Creates the read session the run's first read creates (the target table, its columns, its row
   * restriction) and reads none of it: the run's read-session check, made before anything else
   * depends on it. Without bigquery.readsessions.create this fails naming roles/bigquery.readSessionUser.
   */
  async checkReadAccess(read: TableQuery): Promise<void> {
    const [{ createReadClient }, { probeReadSession }] = await Promise.all([import("./bigquery-clients.ts"), import("./bigquery-read.ts")]);
    const client = await createReadClient(this.project, this.opts.storageReadEndpoint);
    try {
      await probeReadSession(
        client,
        { projectId: this.project, datasetId: read.dataset, tableId: read.table },
        {
          project: this.project,
          retry: this.opts.retry,
          onRetry: this.onRetry,
          ctx: { ...this.context(`creating a read session on ${this.project}.${read.dataset}.${read.table}`, read.dataset), table: read.table },
        },
        {
          selectedFields: [KEY_COLUMN, ...read.columns.map((c) => c.source)],
          rowRestriction: tableRowRestriction(read),
          maxStreamCount: READ_STREAMS_PER_SESSION,
        },
      );
    } finally {
      await client.close();
    }
  }

  private async rows(sql: string, ctx: FailureContext, params?: Record<string, unknown>): Promise<Record<string, unknown>[]> {
    const env = { retry: this.opts.retry, ctx, onRetry: this.onRetry };
    const { job } = await runQueryJob(
      this.bigquery,
      { sql, ...(params ? { params } : {}), timeoutMs: this.opts.queryTimeoutMs, jobPrefix: "bqx_discovery" },
      env,
    );
    return fetchAllRows(job, env);
  }

  async close(): Promise<void> {
    // The REST client holds no connection of its own beyond keep-alive sockets.
  }
}
