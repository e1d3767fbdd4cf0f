// The bucket port: where the validated training file ends up (Cloud Storage in production,
// a local directory by default).

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
  put(localPath: string, name: string, expected: Checksums): Promise<PutResult>;
  list(prefix?: string): Promise<string[]>;
  delete(name: string): Promise<void>;
}
