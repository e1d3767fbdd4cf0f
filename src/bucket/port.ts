// The bucket port: where the validated training file ends up (Cloud Storage in production,
// a local directory by default).
import { JobError } from "../errors.ts";

export interface Checksums {
  /** Base64 of the big-endian CRC32C, as Cloud Storage reports it. */
  crc32c: string;
  /** Hex SHA-256; verified (and recorded as `sha256` metadata) when given, else only crc32c is. */
  sha256?: string | undefined;
}

export interface PutResult {
  uri: string;
  bytes: number;
  checksums: Checksums;
  /** The stored object's generation (Cloud Storage), when the backend has one. */
  generation?: string;
}

/** What `get` downloaded: the object's identity plus the local file it now lives in. */
export interface GetResult extends PutResult {
  path: string;
}

export interface ObjectInfo {
  /** Relative to the bucket's location, as passed to `put`. */
  name: string;
  bytes: number;
  /** Base64 of the big-endian CRC32C, as Cloud Storage reports it. */
  crc32c: string;
  generation?: string;
  /** Custom metadata given to `put` or `compose` (plus `sha256` when `put` had one). */
  metadata: Record<string, string>;
  /** Composite objects only: how many plain objects were concatenated into it, at any depth. */
  componentCount?: number;
}

/** A source of `compose` or `move`, pinned: the operation fails if it was replaced or deleted since. */
export interface SourceObject {
  name: string;
  generation: string;
}

export interface ComposeOptions {
  /** The destination's generation the operation requires; "0": it must not exist. Default: what is there now. */
  ifGenerationMatch?: string;
  /** The new object's custom metadata, set in the same operation. */
  metadata?: Record<string, string>;
  contentType?: string;
  /** What the result must be; checked after the operation, and an object that differs is deleted. */
  expected?: { bytes: number; crc32c: string };
}

/** A byte range of a local file: [start, end), end exclusive. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface Bucket {
  /** Where objects land, for messages (a directory path or gs:// URI). */
  readonly location: string;
  /** Fails fast (before any extraction) when objects cannot be written there. */
  checkWritable(): Promise<void>;
  /** Most sources one `compose` takes (Cloud Storage: 32); larger assemblies are a tree of composes. */
  readonly maxComposeSources: number;
  /**
   * Copies a local file (or bytes [range.start, range.end) of it) to `name`, verifying after the
   * copy that the stored object has the expected checksums (of that range); the object appears
   * only when complete and verified.
   */
  put(localPath: string, name: string, expected: Checksums, metadata?: Record<string, string>, range?: ByteRange): Promise<PutResult>;
  /**
   * Concatenates the pinned sources, in order, into `destination`, atomically and with
   * `opts.metadata` set in the same operation. A source replaced or deleted since its generation
   * was read fails the compose (reason "source-changed", naming it). With `opts.expected`, a
   * result of another size or crc32c is deleted and a retryable "checksum-mismatch" thrown.
   */
  compose(sources: readonly SourceObject[], destination: string, opts?: ComposeOptions): Promise<ObjectInfo>;
  /**
   * Makes the pinned source's bytes the object `destination` (honouring `opts.ifGenerationMatch`
   * there; `opts.metadata`, else the source's; `opts.expected`, else the source's size and
   * crc32c), then removes the source. No bytes pass through this process: Cloud Storage composes
   * server-side (a new generation, and a composite), the local directory renames (the file keeps
   * its mtime, so its generation, and a plain object stays plain).
   */
  move(source: SourceObject, destination: string, opts?: ComposeOptions): Promise<ObjectInfo>;
  /** The object's size, checksum and metadata; `undefined` when there is no such object. */
  stat(name: string): Promise<ObjectInfo | undefined>;
  /**
   * Downloads `name` to `localPath` through a temporary name, verifying the CRC32C of what
   * arrived against the object's; on a mismatch (a JobError) no file is left at `localPath`.
   */
  get(name: string, localPath: string): Promise<GetResult>;
  /** Bytes [start, end) of the object (end exclusive, like Buffer.subarray). */
  readRange(name: string, start: number, end: number): Promise<Buffer>;
  /** Every object name starting with `prefix`, sorted, across all pages. */
  list(prefix?: string): Promise<string[]>;
  /** Deleting an object that does not exist is not an error. */
  delete(name: string): Promise<void>;
  /**
   * Removes what writers that died mid-write left under `prefix` without it ever becoming an
   * object; returns how many. Only the local directory has such leftovers (its temporary copies);
   * an interrupted upload to Cloud Storage leaves nothing to list or delete.
   */
  sweep?(prefix: string): Promise<number>;
}

/** Whether `err` says another writer changed an object a precondition pinned (either backend). */
export function isPreconditionFailure(err: unknown): err is JobError {
  return err instanceof JobError && (err.reason === "precondition-failed" || err.reason === "gcs-precondition-failed");
}

/** 1..max sources per compose; the reasons are the ones Cloud Storage's 400s convert to (src/gcp/errors.ts). */
export function assertSourceCount(count: number, max: number, target: string): void {
  if (count === 0) throw new JobError(`cannot compose ${target} from no sources`, { reason: "compose-no-sources", fix: "pass at least one source" });
  if (count > max) {
    throw new JobError(`cannot compose ${target} from ${count} sources: at most ${max} per compose`, {
      reason: "too-many-compose-sources",
      fix: `compose in a tree: groups of at most ${max} (the bucket's maxComposeSources), then the groups' results`,
    });
  }
}

/** Rejects a byte range `readRange` cannot mean, before any I/O. */
export function assertByteRange(where: string, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new JobError(`invalid byte range [${start}, ${end}) for ${where}`, { reason: "bad-range", fix: "pass 0 <= start <= end (end exclusive)" });
  }
}
