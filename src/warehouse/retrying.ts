// Discovery retries for a warehouse that does not retry by itself (the embedded DuckDB file).
// BigQuery's adapter retries inside (src/warehouse/bigquery-clients.ts), so it is never wrapped:
// retries on top of its own would multiply the attempts. Only errors marked `retryable` are tried
// again (an injected FAULT_RATE fault: a real error from an embedded file will not go away).
import { JobError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { withRetry, type RetryPolicy } from "../retry.ts";
import type { TableQuery, DateRange, KeyTypes, ReadEstimate, TableInfo, TableVersion, Warehouse } from "./port.ts";

/** An embedded warehouse's faults clear at once: short backoffs. */
export const LOCAL_WAREHOUSE_RETRY = { attempts: 5, baseDelayMs: 20, maxDelayMs: 200 } as const;

export class RetryingWarehouse implements Warehouse {
  readonly keyTypes: KeyTypes;
  private readonly inner: Warehouse;
  private readonly log: Pick<Logger, "warn"> | undefined;
  private readonly signal: AbortSignal | undefined;

  constructor(inner: Warehouse, opts: { log?: Pick<Logger, "warn"> | undefined; signal?: AbortSignal | undefined } = {}) {
    this.inner = inner;
    this.keyTypes = inner.keyTypes;
    this.log = opts.log;
    this.signal = opts.signal;
  }

  preflight(datasets: readonly string[]): Promise<void> {
    return this.retrying("preflight", datasets.join(","), () => this.inner.preflight(datasets));
  }

  listTables(dataset: string): Promise<TableInfo[]> {
    return this.retrying("listTables", dataset, () => this.inner.listTables(dataset));
  }

  tableVersions(dataset: string, tables: readonly string[], range: DateRange): Promise<Map<string, TableVersion>> {
    return this.retrying("tableVersions", dataset, () => this.inner.tableVersions(dataset, tables, range));
  }

  estimateReads(reads: readonly TableQuery[]): Promise<ReadEstimate> {
    return this.retrying("estimateReads", `${reads.length} tables`, () => this.inner.estimateReads(reads));
  }

  checkReadAccess(read: TableQuery): Promise<void> {
    return this.retrying("checkReadAccess", `${read.dataset}.${read.table}`, () => this.inner.checkReadAccess(read));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private retrying<T>(operation: string, target: string, fn: () => Promise<T>): Promise<T> {
    const policy: RetryPolicy = {
      ...LOCAL_WAREHOUSE_RETRY,
      isRetryable: (err) => err instanceof JobError && err.retryable,
      signal: this.signal,
      onRetry: ({ attempt, delayMs, error }) =>
        this.log?.warn(
          { operation, target, attempt, delayMs, reason: (error as JobError).reason },
          `retrying ${operation} ${target}: ${(error as Error).message}`,
        ),
    };
    return withRetry(fn, policy);
  }
}
