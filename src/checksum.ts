// Streaming checksums of files: CRC32C (what Cloud Storage verifies) and SHA-256.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { crc32c } from "@node-rs/crc32";

/** Both checksums of a whole file. */
export async function fileChecksums(path: string): Promise<{ crc32c: string; sha256: string; bytes: number }> {
  const sha = createHash("sha256");
  let crc = 0;
  let bytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) {
    const buf = chunk as Buffer;
    sha.update(buf);
    crc = crc32c(buf, crc);
    bytes += buf.length;
  }
  return { crc32c: crc32cBase64(crc), sha256: sha.digest("hex"), bytes };
}

/** Cloud Storage's representation: base64 of the 4 big-endian bytes. */
export function crc32cBase64(value: number): string {
  const buf = Buffer.alloc(4);
  buf.writeUInt32BE(value >>> 0);
  return buf.toString("base64");
}
