// The bucket port: where the validated training file ends up (Cloud Storage in production,
// a local directory by default).
import { JobError } from "../errors.ts";

export interface Checksums {
  /** Base64 of the big-endian CRC32C, as Cloud Storage reports it. */
  crc32c: string;
  /** Hex SHA-256. */
  sha256: string;
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
  /** Custom metadata given to `put` (plus `sha256`, which `put` always records). */
  metadata: Record<string, string>;
}

export interface Bucket {
  /** Where objects land, for messages (a directory path or gs:// URI). */
  readonly location: string;
  /** Fails fast (before any extraction) when objects cannot be written there. */
  checkWritable(): Promise<void>;
  /**
   * Copies a local file to `name`, verifying after the copy that the stored object has the
   * expected checksums; the object appears only when complete and verified.
   */
  put(localPath: string, name: string, expected: Checksums, metadata?: Record<string, string>): Promise<PutResult>;
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
}

/** Rejects a byte range `readRange` cannot mean, before any I/O. */
export function assertByteRange(where: string, start: number, end: number): void {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new JobError(`invalid byte range [${start}, ${end}) for ${where}`, { reason: "bad-range", fix: "pass 0 <= start <= end (end exclusive)" });
  }
}
