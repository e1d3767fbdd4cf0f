// Where parts live between extraction and assembly: under a staging prefix of the output's own
// bucket (compose needs sources and destination in one bucket), as two objects each:
//   <OUTPUT_URI>/_staging/<pair>/parts/<fingerprint>.chunks   the part's column-chunk bytes
//   <OUTPUT_URI>/_staging/<pair>/parts/<fingerprint>.footer   its parquet footer (thrift)
// Both carry the CRC32C computed when the part was written (`bqx_crc32c`); the bucket verifies
// the upload against it, and a later attempt trusts a part only if both objects still have it.
// A retried task in a new container finds its parts here by fingerprint and extracts only the
// rest. The assembly's own objects (head, footer, intermediate composites, the temporary file)
// go under <OUTPUT_URI>/_staging/<pair>/assembly/. Cleanup removes the pair's whole prefix once
// the file is published; a lifecycle rule on `_staging/` catches what a failed run leaves.
import { open, rm } from "node:fs/promises";
import type { Bucket, SourceObject } from "../bucket/port.ts";
import { crc32cBase64 } from "../checksum.ts";
import { PART_UPLOADS_AT_ONCE, REUSE_CHECKS_AT_ONCE, limiter } from "../concurrency.ts";
import { crc32cFromBase64 } from "../crc32c-combine.ts";
import { describeError } from "../errors.ts";
import type { WrittenPart } from "../extract/task.ts";
import { metadataValue } from "../names.ts";
import { planPart } from "../parquet/index.ts";

export const STAGING_DIR = "_staging";
const CRC_KEY = "bqx_crc32c";
const SOURCE_ROWS_KEY = "bqx_source_rows";

export type PartBucket = Pick<Bucket, "location" | "put" | "stat" | "readRange" | "list" | "delete" | "sweep">;

/** A part in the bucket, ready to be placed in the file. */
export interface StagedPart {
  fingerprint: string;
  /** Position of the part's table in the file (0: the target). */
  table: number;
  /** `<dataset>.<table>`, for messages and the manifest. */
  label: string;
  firstRowGroup: number;
  endRowGroup: number;
  /** The chunks object, pinned by generation, with its size and CRC32C. */
  chunks: SourceObject & { bytes: number; crc32c: number };
  /** Rows the table had in the part's key range (before the join), recorded when it was staged. */
  sourceRows: number;
  footerThrift: Uint8Array;
  /** True when found in the bucket from an earlier attempt instead of being extracted now. */
  reused: boolean;
}

/** What a part is expected to be, to stage or to recognise it. */
export interface PartSpec {
  fingerprint: string;
  table: number;
  label: string;
  firstRowGroup: number;
  endRowGroup: number;
  /** Rows of each of its row groups, in order. */
  rowGroupRows: readonly number[];
}

export function stagingPrefix(pair: string): string {
  return `${STAGING_DIR}/${pair}/`;
}

export function partsPrefix(pair: string): string {
  return `${stagingPrefix(pair)}parts/`;
}

export function assemblyPrefix(pair: string, assembly: string): string {
  return `${stagingPrefix(pair)}assembly/${assembly}/`;
}

async function readRangeOf(path: string, start: number, end: number): Promise<Uint8Array> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(end - start);
    const { bytesRead } = await fh.read(buf, 0, buf.length, start);
    if (bytesRead !== buf.length) throw new Error(`${path}: unexpected end of file`);
    return buf;
  } finally {
    await fh.close();
  }
}

export class PartStore {
  readonly location: string;
  private readonly bucket: PartBucket;
  private readonly pair: string;
  private readonly stagingSlot = limiter(PART_UPLOADS_AT_ONCE);
  private readonly checkSlot = limiter(REUSE_CHECKS_AT_ONCE);

  constructor(bucket: PartBucket, pair: string) {
    this.bucket = bucket;
    this.pair = pair;
    this.location = `${bucket.location.replace(/\/+$/, "")}/${partsPrefix(pair)}`;
  }

  names(fingerprint: string): { chunks: string; footer: string } {
    const base = `${partsPrefix(this.pair)}${fingerprint}`;
    return { chunks: `${base}.chunks`, footer: `${base}.footer` };
  }

  /** The fingerprints that have both objects in the bucket. */
  async inventory(): Promise<Set<string>> {
    const names = new Set(await this.bucket.list(partsPrefix(this.pair)));
    const found = new Set<string>();
    for (const name of names) {
      const m = /([0-9a-f]{64})\.chunks$/.exec(name);
      if (m && names.has(name.replace(/\.chunks$/, ".footer"))) found.add(m[1]!);
    }
    return found;
  }

  /**
   * The staged part for `spec` if both objects are whole (their CRC32C is the one recorded when
   * the part was written) and the footer describes the expected row groups; otherwise why not.
   */
  async find(spec: PartSpec): Promise<StagedPart | { problem: string }> {
    return this.checkSlot(async () => {
      const names = this.names(spec.fingerprint);
      const [chunks, footer] = await Promise.all([this.bucket.stat(names.chunks), this.bucket.stat(names.footer)]);
      if (!chunks || !footer) return { problem: "incomplete (one of its two objects is missing)" };
      if (chunks.crc32c !== chunks.metadata[CRC_KEY] || footer.crc32c !== footer.metadata[CRC_KEY]) {
        return {
          problem: `damaged (CRC32C ${chunks.crc32c}/${footer.crc32c}, recorded ${chunks.metadata[CRC_KEY] ?? "none"}/${footer.metadata[CRC_KEY] ?? "none"})`,
        };
      }
      if (!chunks.generation) return { problem: "without a generation to pin" };
      const sourceRows = Number(chunks.metadata[SOURCE_ROWS_KEY]);
      if (!Number.isSafeInteger(sourceRows) || sourceRows < 0) return { problem: `without its row count (${SOURCE_ROWS_KEY})` };
      let thrift: Uint8Array;
      try {
        thrift = new Uint8Array(await this.bucket.readRange(names.footer, 0, footer.bytes));
        const plan = planPart(thrift, names.footer);
        const rowsMatch = plan.rowGroupRows.length === spec.rowGroupRows.length && plan.rowGroupRows.every((n, i) => n === spec.rowGroupRows[i]);
        if (!rowsMatch) return { problem: `for other row groups (${plan.rowGroupRows.length} in its footer)` };
        if (plan.dataEnd - plan.dataStart !== chunks.bytes)
          return { problem: `damaged (its footer spans ${plan.dataEnd - plan.dataStart} bytes of chunks, the object holds ${chunks.bytes})` };
      } catch (err) {
        return { problem: `unreadable (${describeError(err)})` };
      }
      return {
        ...spec,
        chunks: { name: names.chunks, generation: chunks.generation, bytes: chunks.bytes, crc32c: crc32cFromBase64(chunks.crc32c) },
        sourceRows,
        footerThrift: thrift,
        reused: true,
      };
    });
  }

  /** Uploads a written part's chunks and footer (byte ranges of its file), then removes the file. */
  async stage(spec: PartSpec, written: WrittenPart, sourceRows: number): Promise<StagedPart> {
    return this.stagingSlot(async () => {
      const names = this.names(spec.fingerprint);
      const common = {
        fingerprint: spec.fingerprint,
        table: metadataValue(spec.label),
        row_groups: `${spec.firstRowGroup}-${spec.endRowGroup}`,
        [SOURCE_ROWS_KEY]: String(sourceRows),
      };
      const footerCrc = crc32cBase64(written.footerCrc32c);
      const dataCrc = crc32cBase64(written.dataCrc32c);
      const thrift = await readRangeOf(written.path, written.footerStart, written.footerEnd);
      // The two objects go up side by side: a part counts only when both are there, whichever lands first.
      const [, chunks] = await Promise.all([
        this.bucket.put(
          written.path,
          names.footer,
          { crc32c: footerCrc },
          { ...common, [CRC_KEY]: footerCrc },
          { start: written.footerStart, end: written.footerEnd },
        ),
        this.bucket.put(written.path, names.chunks, { crc32c: dataCrc }, { ...common, [CRC_KEY]: dataCrc }, { start: written.dataStart, end: written.dataEnd }),
      ]);
      if (!chunks.generation) throw new Error(`${names.chunks}: the bucket reported no generation`);
      await rm(written.path, { force: true });
      return {
        ...spec,
        chunks: { name: names.chunks, generation: chunks.generation, bytes: written.dataEnd - written.dataStart, crc32c: written.dataCrc32c },
        sourceRows,
        footerThrift: thrift,
        reused: false,
      };
    });
  }

  /** Deletes everything under the pair's staging prefix (parts of every fingerprint, the assembly, a local bucket's abandoned temporary copies). */
  async removeAll(): Promise<{ removed: number; left: string[]; error?: unknown }> {
    const names = await this.bucket.list(stagingPrefix(this.pair));
    const outcomes = await Promise.allSettled(names.map((name) => this.checkSlot(() => this.bucket.delete(name))));
    const left = names.filter((_, i) => outcomes[i]?.status === "rejected");
    let error: unknown = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected")?.reason;
    // A local bucket also holds the temporary copies of uploads a crash cut short.
    try {
      await this.bucket.sweep?.(stagingPrefix(this.pair));
    } catch (err) {
      left.push(`${stagingPrefix(this.pair)}*.uploading-* (temporary copies)`);
      error ??= err;
    }
    return { removed: names.length - left.length, left, ...(error !== undefined ? { error } : {}) };
  }
}
