// Whole-operation retries for a bucket that does not retry by itself (the local directory).
// Cloud Storage's adapter retries inside (src/bucket/gcs.ts), so it is never wrapped: retries on
// top of its own would multiply the attempts. Only errors marked `retryable` are tried again
// (a checksum mismatch after a copy, an injected FAULT_RATE fault); anything else, and the last
// attempt's error, reach the caller unchanged. `put` and `compose` are safe to repeat: every
// attempt stages its own copy and removes it when it fails, so a failed attempt leaves nothing
// behind; a `move` fails (when it fails) before its rename, so the source is still there to retry.
import type { Logger } from "../log.ts";
import { withRetry, type RetryPolicy } from "../retry.ts";
import { JobError } from "../errors.ts";
import type { Bucket, ByteRange, Checksums, ComposeOptions, GetResult, ObjectInfo, PutResult, SourceObject } from "./port.ts";

/** A local directory's faults clear in milliseconds: short backoffs; six tries keep a FAULT_RATE=0.2 run with a few hundred calls (CHECKPOINT_URI set) from failing by chance. */
export const LOCAL_BUCKET_RETRY = { attempts: 6, baseDelayMs: 20, maxDelayMs: 200 } as const;

export interface RetryingBucketOptions {
  log: Pick<Logger, "warn">;
  signal?: AbortSignal | undefined;
  attempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export class RetryingBucket implements Bucket {
  readonly location: string;
  readonly maxComposeSources: number;
  private readonly inner: Bucket;
  private readonly opts: RetryingBucketOptions;

  constructor(inner: Bucket, opts: RetryingBucketOptions) {
    this.inner = inner;
    this.location = inner.location;
    this.maxComposeSources = inner.maxComposeSources;
    this.opts = opts;
  }

  checkWritable(): Promise<void> {
    return this.retrying("checkWritable", this.location, () => this.inner.checkWritable());
  }

  put(localPath: string, name: string, expected: Checksums, metadata?: Record<string, string>, range?: ByteRange): Promise<PutResult> {
    return this.retrying("put", name, () => this.inner.put(localPath, name, expected, metadata, range));
  }

  compose(sources: readonly SourceObject[], destination: string, opts?: ComposeOptions): Promise<ObjectInfo> {
    return this.retrying("compose", destination, () => this.inner.compose(sources, destination, opts));
  }

  move(source: SourceObject, destination: string, opts?: ComposeOptions): Promise<ObjectInfo> {
    return this.retrying("move", destination, () => this.inner.move(source, destination, opts));
  }

  stat(name: string): Promise<ObjectInfo | undefined> {
    return this.retrying("stat", name, () => this.inner.stat(name));
  }

  get(name: string, localPath: string): Promise<GetResult> {
    return this.retrying("get", name, () => this.inner.get(name, localPath));
  }

  readRange(name: string, start: number, end: number): Promise<Buffer> {
    return this.retrying("readRange", name, () => this.inner.readRange(name, start, end));
  }

  list(prefix?: string): Promise<string[]> {
    return this.retrying("list", prefix ?? "", () => this.inner.list(prefix));
  }

  delete(name: string): Promise<void> {
    return this.retrying("delete", name, () => this.inner.delete(name));
  }

  sweep(prefix: string): Promise<number> {
    return this.retrying("sweep", prefix, async () => (await this.inner.sweep?.(prefix)) ?? 0);
  }

  private retrying<T>(operation: string, target: string, fn: () => Promise<T>): Promise<T> {
    const attempts = this.opts.attempts ?? LOCAL_BUCKET_RETRY.attempts;
    const policy: RetryPolicy = {
      attempts,
      baseDelayMs: this.opts.baseDelayMs ?? LOCAL_BUCKET_RETRY.baseDelayMs,
      maxDelayMs: this.opts.maxDelayMs ?? LOCAL_BUCKET_RETRY.maxDelayMs,
      isRetryable: (err) => err instanceof JobError && err.retryable,
      signal: this.opts.signal,
      onRetry: ({ attempt, delayMs, error }) => {
        this.opts.log.warn(
          { operation, target, bucket: this.location, attempt, delayMs, reason: (error as JobError).reason },
          `retrying ${operation} ${target || "(all)"}: ${(error as Error).message}`,
        );
      },
    };
    return withRetry(fn, policy);
  }
}
