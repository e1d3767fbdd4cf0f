// FAULT_RATE (testing only): transient faults for the embedded backends, so the retry paths run
// for real with no network to break. They are decorators around the ports (FaultyBucket,
// FaultyWarehouse) and one draw in the extraction task (pool.ts passes the settings, worker.ts
// draws); no adapter knows about them. Each draw is keyed by the seed, the operation, its target
// and how many times that pair has been tried, so a run fails the same calls whatever order
// concurrent calls happen in and whichever thread draws.
import { createHash } from "node:crypto";
import path from "node:path";
import type { Bucket, ByteRange, Checksums, ComposeOptions, GetResult, ObjectInfo, PutResult, SourceObject } from "./bucket/port.ts";
import { JobError } from "./errors.ts";
import type { TableQuery, DateRange, KeyTypes, ReadEstimate, TableInfo, TableVersion, Warehouse } from "./warehouse/port.ts";

export interface FaultSettings {
  /** Share of calls that fail, in (0, 0.5]. */
  rate: number;
  seed: number;
}

/** Whether try `attempt` of what `key` names fails: reproducible from the seed alone. */
export function faultDrawn(settings: FaultSettings, key: string, attempt: number): boolean {
  const digest = createHash("sha256").update(`${settings.seed}:${key}:${attempt}`).digest();
  return digest.readUInt32BE(0) / 2 ** 32 < settings.rate;
}

/** The error an injected fault raises: retryable, like the transient fault it stands for. */
export function injectedFault(rate: number, what: string): JobError {
  return new JobError(`injected transient fault (FAULT_RATE=${rate}) in ${what}`, { reason: "injected-fault", retryable: true, fix: "unset FAULT_RATE" });
}

/** Whether `err` is one of ours, so a caller that converts errors passes it through unchanged. */
export function isInjectedFault(err: unknown): err is JobError {
  return err instanceof JobError && err.reason === "injected-fault";
}

/** Counts the tries of each operation on each target and throws the faults the draws pick. */
export class FaultInjector {
  private readonly settings: FaultSettings;
  private readonly tries = new Map<string, number>();
  /** Faults injected so far, per operation (for tests and log lines). */
  readonly injected = new Map<string, number>();

  constructor(settings: FaultSettings) {
    this.settings = settings;
  }

  /**
   * Throws an injected transient fault for this try of `operation` on `target`, at the configured
   * rate. `target` keys the draw, so it must not vary between runs (an object name, not a temp
   * path); `shown` names it in the message when that differs.
   */
  maybeFail(operation: string, target: string, shown = target): void {
    const key = `${operation}:${target}`;
    const attempt = (this.tries.get(key) ?? 0) + 1;
    this.tries.set(key, attempt);
    if (!faultDrawn(this.settings, key, attempt)) return;
    this.injected.set(operation, (this.injected.get(operation) ?? 0) + 1);
    throw injectedFault(this.settings.rate, `${operation} of ${shown}`);
  }
}

/** A bucket whose every call may fail before it reaches `inner`, as a dropped request would. */
export class FaultyBucket implements Bucket {
  readonly location: string;
  readonly maxComposeSources: number;
  private readonly inner: Bucket;
  readonly faults: FaultInjector;

  constructor(inner: Bucket, settings: FaultSettings) {
    this.inner = inner;
    this.location = inner.location;
    this.maxComposeSources = inner.maxComposeSources;
    this.faults = new FaultInjector(settings);
  }

  async checkWritable(): Promise<void> {
    this.faults.maybeFail("checkWritable", path.basename(this.location), this.location);
    return this.inner.checkWritable();
  }

  async put(localPath: string, name: string, expected: Checksums, metadata?: Record<string, string>, range?: ByteRange): Promise<PutResult> {
    this.faults.maybeFail("put", name);
    return this.inner.put(localPath, name, expected, metadata, range);
  }

  async compose(sources: readonly SourceObject[], destination: string, opts?: ComposeOptions): Promise<ObjectInfo> {
    this.faults.maybeFail("compose", destination);
    return this.inner.compose(sources, destination, opts);
  }

  async move(source: SourceObject, destination: string, opts?: ComposeOptions): Promise<ObjectInfo> {
    this.faults.maybeFail("move", destination);
    return this.inner.move(source, destination, opts);
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    this.faults.maybeFail("stat", name);
    return this.inner.stat(name);
  }

  async get(name: string, localPath: string): Promise<GetResult> {
    this.faults.maybeFail("get", name);
    return this.inner.get(name, localPath);
  }

  async readRange(name: string, start: number, end: number): Promise<Buffer> {
    this.faults.maybeFail("readRange", name);
    return this.inner.readRange(name, start, end);
  }

  async list(prefix?: string): Promise<string[]> {
    this.faults.maybeFail("list", prefix ?? "");
    return this.inner.list(prefix);
  }

  async delete(name: string): Promise<void> {
    this.faults.maybeFail("delete", name);
    return this.inner.delete(name);
  }

  async sweep(prefix: string): Promise<number> {
    return (await this.inner.sweep?.(prefix)) ?? 0;
  }
}

/**
 * A warehouse whose discovery queries may fail before they reach `inner`. Table versions are not
 * drawn: hundreds of them, each failing its tries at 1/32 when the rate is 0.5, would fail most
 * runs; the listing queries exercise the retries.
 */
export class FaultyWarehouse implements Warehouse {
  readonly keyTypes: KeyTypes;
  private readonly inner: Warehouse;
  readonly faults: FaultInjector;

  constructor(inner: Warehouse, settings: FaultSettings) {
    this.inner = inner;
    this.keyTypes = inner.keyTypes;
    this.faults = new FaultInjector(settings);
  }

  async preflight(datasets: readonly string[]): Promise<void> {
    this.faults.maybeFail("preflight", datasets.join(","));
    return this.inner.preflight(datasets);
  }

  async listTables(dataset: string): Promise<TableInfo[]> {
    this.faults.maybeFail("listTables", dataset);
    return this.inner.listTables(dataset);
  }

  tableVersions(dataset: string, tables: readonly string[], range: DateRange): Promise<Map<string, TableVersion>> {
    return this.inner.tableVersions(dataset, tables, range);
  }

  async estimateReads(reads: readonly TableQuery[]): Promise<ReadEstimate> {
    this.faults.maybeFail("estimateReads", reads.map((r) => r.table).join(","));
    return this.inner.estimateReads(reads);
  }

  checkReadAccess(read: TableQuery): Promise<void> {
    return this.inner.checkReadAccess(read);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
