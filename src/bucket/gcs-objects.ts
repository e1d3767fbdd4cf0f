// The Cloud Storage client as the adapter (gcs.ts) uses it: the library set up once (its own
// request retries, credentials on a custom endpoint), object names under the prefix, object
// resources as the port describes them, and the whole-operation retry (src/retry.ts) that
// converts every failure to a JobError at this edge (src/gcp/errors.ts). The operations live in gcs.ts.
import { createReadStream } from "node:fs";
import { Readable } from "node:stream";
import { IdempotencyStrategy, Storage, type Bucket as StorageBucket, type File } from "@google-cloud/storage";
import type { AuthClient } from "google-auth-library";
import { JobError } from "../errors.ts";
import { authClientForEndpoint } from "../gcp/auth.ts";
import { withRetry, type RetryPolicy } from "../retry.ts";
import type { Logger } from "../log.ts";
import { bucketMissing, describeGcsFailure, httpStatusOf as statusOf } from "../gcp/errors.ts";
import type { ByteRange, ObjectInfo, SourceObject } from "./port.ts";

/** Resumable chunks are buffered in memory (the library keeps one to resend after a fault). */
export const DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024;
/** Write probes (checkWritable) are named so; list() never reports them. */
export const PROBE_PREFIX = ".bqx-write-probe-";
/** Sources one compose may name (https://cloud.google.com/storage/docs/composite-objects). */
export const GCS_MAX_COMPOSE_SOURCES = 32;

export interface GcsRetryOptions {
  /** Library retries per request, and per upload session in total (library default 3). */
  requestRetries?: number;
  /** Cap of the library's backoff; at least 1000 (below that its upload path throws). */
  maxRequestDelayMs?: number;
  /** The library's budget per request or upload session, counted from its start. */
  totalTimeoutMs?: number;
  /** Whole-operation tries (first included) for stat, list, get, readRange, delete. */
  attempts?: number;
  /** Whole-upload tries; each resumes the same upload session. Also the tries of one compose. */
  uploadAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export interface GcsBucketOptions {
  /** Cloud Storage JSON API endpoint (a local stand-in); Google's when omitted. */
  apiEndpoint?: string;
  projectId?: string;
  /** Defaults to `authClientForEndpoint(apiEndpoint)`: a placeholder token for loopback, else ADC. */
  authClient?: AuthClient;
  /** Resumable upload chunk size, a multiple of 256 KiB. */
  chunkSizeBytes?: number;
  /** Objects per list request (Cloud Storage caps it at 1000). */
  listPageSize?: number;
  retry?: GcsRetryOptions;
  log?: Pick<Logger, "debug" | "info" | "warn">;
  signal?: AbortSignal;
}

/** `gs://bucket/optional/prefix` -> bucket and a prefix that is empty or ends in `/`. */
export function parseGcsUri(uri: string): { bucket: string; prefix: string } {
  const m = /^gs:\/\/([a-z0-9][a-z0-9._-]{1,220}[a-z0-9])(?:\/(.*))?$/.exec(uri);
  if (!m) throw new JobError(`not a Cloud Storage URI: ${JSON.stringify(uri)}`, { reason: "bad-uri", fix: "use gs://<bucket>/<optional prefix>" });
  const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
  return { bucket: m[1]!, prefix: prefix ? `${prefix}/` : "" };
}

/** The library client, the bucket's identity and the retry settings, shared by the adapter's operations. */
export class GcsObjects {
  readonly location: string;
  readonly bucketName: string;
  readonly prefix: string;
  readonly bucket: StorageBucket;
  readonly chunkSize: number;
  readonly listPageSize: number;
  readonly attempts: number;
  readonly uploadAttempts: number;
  readonly baseDelayMs: number;
  readonly maxDelayMs: number;
  readonly log: GcsBucketOptions["log"];
  readonly signal: AbortSignal | undefined;

  constructor(uri: string, opts: GcsBucketOptions = {}) {
    const { bucket, prefix } = parseGcsUri(uri);
    this.bucketName = bucket;
    this.prefix = prefix;
    this.location = `gs://${bucket}${prefix ? `/${prefix.slice(0, -1)}` : ""}`;
    const r = opts.retry ?? {};
    this.chunkSize = opts.chunkSizeBytes ?? DEFAULT_CHUNK_BYTES;
    if (this.chunkSize <= 0 || this.chunkSize % (256 * 1024) !== 0) {
      throw new JobError(`resumable chunk size ${this.chunkSize} is not a positive multiple of 256 KiB`, { reason: "bad-chunk-size" });
    }
    this.listPageSize = Math.min(1000, opts.listPageSize ?? 1000);
    this.attempts = r.attempts ?? 3;
    this.uploadAttempts = r.uploadAttempts ?? 6;
    this.baseDelayMs = r.baseDelayMs ?? 1000;
    this.maxDelayMs = r.maxDelayMs ?? 30_000;
    this.log = opts.log;
    this.signal = opts.signal;
    const storage = new Storage({
      ...(opts.apiEndpoint ? { apiEndpoint: opts.apiEndpoint } : {}),
      ...(opts.projectId ? { projectId: opts.projectId } : {}),
      authClient: opts.authClient ?? authClientForEndpoint(opts.apiEndpoint),
      // Without this the library sends NO credentials to any custom endpoint, including a
      // private googleapis.com endpoint in production.
      useAuthWithCustomEndpoint: true,
      retryOptions: {
        autoRetry: true,
        maxRetries: r.requestRetries ?? 6,
        retryDelayMultiplier: 2,
        maxRetryDelay: Math.max(1000, r.maxRequestDelayMs ?? 64_000) / 1000,
        // The library counts an upload session's budget from its first byte; a 9 GiB upload
        // takes minutes, so the 600 s default would turn a late fault into a failure.
        totalTimeout: (r.totalTimeoutMs ?? 3_600_000) / 1000,
        idempotencyStrategy: IdempotencyStrategy.RetryConditional,
      },
    });
    this.bucket = storage.bucket(bucket);
  }

  async stat(name: string): Promise<ObjectInfo | undefined> {
    return this.retrying("read the metadata of", name, async () => {
      try {
        const [md] = await this.file(name).getMetadata();
        return this.infoOf(name, md);
      } catch (err) {
        if (statusOf(err) === 404 && !bucketMissing(err)) return undefined;
        throw err;
      }
    });
  }

  /** The metadata of exactly that generation; one no longer live fails with reason "source-changed". */
  statGeneration(source: SourceObject, what: string): Promise<ObjectInfo> {
    return this.retrying("read the metadata of", source.name, async () => {
      try {
        const [md] = await this.file(source.name, source.generation).getMetadata();
        return this.infoOf(source.name, md);
      } catch (err) {
        if (statusOf(err) !== 404 || bucketMissing(err)) throw err;
        throw new JobError(
          `cannot ${what}: ${this.uriOf(source.name)} is no longer generation ${source.generation}; it was replaced or deleted after its generation was read`,
          {
            reason: "source-changed",
            fix: "stage that object again and use its new generation",
            cause: err,
          },
        );
      }
    });
  }

  /** An object resource (metadata GET or compose answer) as the port describes it. */
  infoOf(name: string, md: { size?: unknown; crc32c?: unknown; generation?: unknown; metadata?: unknown; componentCount?: unknown }): ObjectInfo {
    const custom = Object.fromEntries(
      Object.entries((md.metadata ?? {}) as Record<string, unknown>)
        .filter(([, v]) => v !== null && v !== undefined)
        .map(([k, v]) => [k, String(v)]),
    );
    return {
      name,
      bytes: Number(md.size ?? 0),
      crc32c: typeof md.crc32c === "string" ? md.crc32c : "",
      generation: typeof md.generation === "string" || typeof md.generation === "number" ? String(md.generation) : undefined,
      metadata: custom,
      ...(md.componentCount !== undefined ? { componentCount: Number(md.componentCount) } : {}),
    };
  }

  file(name: string, generation?: string): File {
    if (!name || name.startsWith("/") || name.split("/").some((part) => part === "." || part === "..")) {
      throw new JobError(`object name ${JSON.stringify(name)} is not a plain relative name`, { reason: "bad-object-name" });
    }
    return this.bucket.file(this.prefix + name, generation ? { generation } : {});
  }

  uriOf(name: string): string {
    return `gs://${this.bucketName}/${this.prefix}${name}`;
  }

  policy(attempts: number, op: string, target: string): RetryPolicy {
    return {
      attempts,
      baseDelayMs: this.baseDelayMs,
      maxDelayMs: this.maxDelayMs,
      isRetryable: (err: unknown) => err instanceof JobError && err.retryable,
      ...(this.signal ? { signal: this.signal } : {}),
      onRetry: ({ attempt, delayMs, error }) =>
        this.log?.warn(
          { op, target, attempt, delayMs, err: (error as Error).message },
          `${op} ${target} failed; trying again in ${delayMs} ms (attempt ${attempt + 1} of ${attempts})`,
        ),
    };
  }

  /** Runs `fn` under the whole-operation retry, converting failures to JobErrors. */
  retrying<T>(op: string, name: string, fn: () => Promise<T>): Promise<T> {
    return withRetry(
      async () => {
        try {
          return await fn();
        } catch (err) {
          throw this.toJobError(err, op, name);
        }
      },
      this.policy(this.attempts, op, this.uriOf(name)),
    );
  }

  toJobError(err: unknown, op: string, name: string): JobError {
    if (err instanceof JobError) return err;
    return describeGcsFailure(err, { op, bucket: this.bucketName, uri: this.uriOf(name) });
  }
}

/** What Cloud Storage serves an object as. */
export function contentTypeOf(name: string): string {
  if (name.endsWith(".json")) return "application/json";
  if (name.endsWith(".parquet")) return "application/vnd.apache.parquet";
  if (name.endsWith(".html")) return "text/html; charset=utf-8";
  return "application/octet-stream";
}

/** The local file, or bytes [start, end) of it. */
export function readLocal(localPath: string, range: ByteRange | undefined): Readable {
  if (!range) return createReadStream(localPath);
  if (range.end === range.start) return Readable.from([]);
  return createReadStream(localPath, { start: range.start, end: range.end - 1 });
}

export function sameRecord(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a);
  return keys.length === Object.keys(b).length && keys.every((k) => a[k] === b[k]);
}
