// Durable checkpoints (CHECKPOINT_URI). Cloud Run's disk lives and dies with the container, so
// without this a retried task starts a two-hour extraction from zero. Each checkpoint, once
// written and checked locally, is copied to the store as `<pair>/checkpoints/<file>` with the
// fingerprint of the query that produced it in the object's metadata; a later attempt downloads
// every stored checkpoint whose fingerprint matches the query it would run, instead of running it.
import path from "node:path";
import { rm } from "node:fs/promises";
import type { Bucket } from "./bucket/port.ts";
import { fileChecksums } from "./checksum.ts";
import { FINGERPRINT_KEY } from "./constants.ts";
import { JobError, describeError } from "./errors.ts";
import { stagedCheckpointName, stagedCheckpointPrefix } from "./layout.ts";
import type { Logger } from "./log.ts";
import { readFooterSummary } from "./parquet/footer.ts";

/** Uploads at once: enough to keep up with extraction, few enough to leave bandwidth for queries. */
export const STAGING_CONCURRENCY = 4;
/** Metadata reads and downloads at once when restoring. */
export const RESTORE_CONCURRENCY = 8;
/** The object metadata key holding the checkpoint's query fingerprint. */
export const FINGERPRINT_METADATA = "fingerprint";

export type CheckpointBucket = Pick<Bucket, "location" | "put" | "stat" | "get" | "list" | "delete">;

/** One checkpoint as the store sees it. */
export interface StoredCheckpoint {
  /** The local file (its base name is the object's name under the pair's prefix). */
  checkpointPath: string;
  fingerprint: string;
  /** `<dataset>.<table>`, for messages and the object's metadata. */
  label: string;
}

export interface ReconcileOutcome {
  /** Local path -> what was downloaded, for checkpoints now present locally. */
  restored: Map<string, { rows: number; bytes: number }>;
  /** Objects under the pair's prefix when listed. */
  stored: number;
  /** Stored objects for a planned table whose fingerprint differs (extracted again, then replaced). */
  stale: number;
  /** Stored objects that matched but could not be downloaded or did not verify (extracted again). */
  unusable: number;
  /** Valid local checkpoints the store lacked, now queued for staging. */
  restaged: number;
}

/** A function that runs async jobs with at most `limit` of them at once, in call order. */
export function concurrencyLimit(limit: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: Array<() => void> = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    while (active >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    active += 1;
    try {
      return await fn();
    } finally {
      active -= 1;
      waiting.shift()?.();
    }
  };
}

export interface CheckpointStoreOptions {
  log?: Pick<Logger, "info" | "warn" | "debug"> | undefined;
  stagingConcurrency?: number;
  restoreConcurrency?: number;
  /** Called once, with the first staging failure (the extract stage stops extracting). */
  onFailure?: (error: JobError) => void;
}

export class CheckpointStore {
  readonly location: string;
  private readonly bucket: CheckpointBucket;
  private readonly pair: string;
  private readonly opts: CheckpointStoreOptions;
  private readonly stagingSlot: <T>(fn: () => Promise<T>) => Promise<T>;
  private readonly inFlight = new Set<Promise<void>>();
  private firstFailure: JobError | undefined;
  private stagedCount = 0;
  private stagedBytes = 0;

  constructor(bucket: CheckpointBucket, pair: string, opts: CheckpointStoreOptions = {}) {
    this.bucket = bucket;
    this.pair = pair;
    this.opts = opts;
    this.location = `${bucket.location.replace(/\/+$/, "")}/${stagedCheckpointPrefix(pair)}`;
    this.stagingSlot = concurrencyLimit(opts.stagingConcurrency ?? STAGING_CONCURRENCY);
  }

  objectName(checkpointPath: string): string {
    return stagedCheckpointName(this.pair, path.basename(checkpointPath));
  }

  /** The first staging failure, if any. */
  get failure(): JobError | undefined {
    return this.firstFailure;
  }

  /**
   * One listing of the pair's prefix, then, for each `missing` checkpoint the store holds, its
   * metadata: a matching fingerprint is downloaded (checksum-verified, atomic) to its local path
   * and its footer checked. `present` checkpoints (valid locally) that the store lacks are staged.
   */
  async reconcile(missing: readonly StoredCheckpoint[], present: readonly StoredCheckpoint[] = []): Promise<ReconcileOutcome> {
    const listed = new Set(await this.bucket.list(stagedCheckpointPrefix(this.pair)));
    const outcome: ReconcileOutcome = { restored: new Map(), stored: listed.size, stale: 0, unusable: 0, restaged: 0 };
    const slot = concurrencyLimit(this.opts.restoreConcurrency ?? RESTORE_CONCURRENCY);
    await Promise.all(
      missing
        .filter((c) => listed.has(this.objectName(c.checkpointPath)))
        .map((c) =>
          slot(async () => {
            const restored = await this.restoreOne(c);
            if (restored === "stale") outcome.stale += 1;
            else if (restored === "unusable") outcome.unusable += 1;
            else outcome.restored.set(c.checkpointPath, restored);
          }),
        ),
    );
    for (const c of present) {
      if (listed.has(this.objectName(c.checkpointPath))) continue;
      this.stage(c);
      outcome.restaged += 1;
    }
    return outcome;
  }

  private async restoreOne(c: StoredCheckpoint): Promise<{ rows: number; bytes: number } | "stale" | "unusable"> {
    const name = this.objectName(c.checkpointPath);
    const info = await this.bucket.stat(name);
    if (!info || info.metadata[FINGERPRINT_METADATA] !== c.fingerprint) return "stale";
    try {
      await this.bucket.get(name, c.checkpointPath);
      const footer = await readFooterSummary(c.checkpointPath);
      if (footer.keyValueMetadata[FINGERPRINT_KEY] !== c.fingerprint) {
        throw new JobError(`its footer names another query (${footer.keyValueMetadata[FINGERPRINT_KEY] ?? "none"})`, { reason: "checkpoint-mismatch" });
      }
      return { rows: footer.numRows, bytes: footer.fileBytes };
    } catch (err) {
      await rm(c.checkpointPath, { force: true });
      this.opts.log?.warn({ object: `${this.location}${path.basename(c.checkpointPath)}`, err: describeError(err) }, `cannot restore ${c.label} from the checkpoint store (${describeError(err)}); extracting it again`);
      return "unusable";
    }
  }

  /**
   * Queues a verified local checkpoint for upload and returns at once; at most
   * `stagingConcurrency` uploads run together. A failure is kept for `drain` and reported
   * through `onFailure`; nothing more is staged after one.
   */
  stage(c: StoredCheckpoint & { rows?: number }): void {
    if (this.firstFailure) return;
    const name = this.objectName(c.checkpointPath);
    const upload = this.stagingSlot(async () => {
      if (this.firstFailure) return;
      const sums = await fileChecksums(c.checkpointPath);
      const metadata: Record<string, string> = { [FINGERPRINT_METADATA]: c.fingerprint, table: c.label, ...(c.rows !== undefined ? { rows: String(c.rows) } : {}) };
      await this.bucket.put(c.checkpointPath, name, sums, metadata);
      this.stagedCount += 1;
      this.stagedBytes += sums.bytes;
      this.opts.log?.debug({ object: name, bytes: sums.bytes }, `staged ${c.label}`);
    }).catch((err: unknown) => {
      if (this.firstFailure) return;
      const job = err instanceof JobError ? err : undefined;
      this.firstFailure = new JobError(`cannot stage the checkpoint of ${c.label} in CHECKPOINT_URI (${this.location}${path.basename(c.checkpointPath)}): ${describeError(err)}`, {
        reason: "checkpoint-staging-failed",
        fix: job?.fix ?? "check that CHECKPOINT_URI can be written by the job, or unset it to run without durable checkpoints",
        cause: err,
      });
      this.opts.onFailure?.(this.firstFailure);
    });
    this.inFlight.add(upload);
    void upload.finally(() => this.inFlight.delete(upload));
  }

  /** Uploads queued or running. */
  get pending(): number {
    return this.inFlight.size;
  }

  /** Waits until every queued upload has finished; throws the first staging failure. */
  async drain(): Promise<{ staged: number; bytes: number }> {
    await this.settle();
    if (this.firstFailure) throw this.firstFailure;
    return { staged: this.stagedCount, bytes: this.stagedBytes };
  }

  /** Waits until every queued upload has finished, whatever the outcome. */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  /**
   * Deletes every object under the pair's prefix. Returns how many were removed and which could
   * not be (after the bucket's own retries), with the first error.
   */
  async removeAll(): Promise<{ removed: number; left: string[]; error?: unknown }> {
    const names = await this.bucket.list(stagedCheckpointPrefix(this.pair));
    const slot = concurrencyLimit(this.opts.restoreConcurrency ?? RESTORE_CONCURRENCY);
    const outcomes = await Promise.allSettled(names.map((name) => slot(() => this.bucket.delete(name))));
    const left = names.filter((_, i) => outcomes[i]?.status === "rejected");
    const error = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected")?.reason;
    return { removed: names.length - left.length, left, ...(error !== undefined ? { error } : {}) };
  }
}
