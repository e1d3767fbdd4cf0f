// Assembling the training file in the bucket. The file is `PAR1`, the parts' column-chunk objects
// in column order (the target's first, then each feature table's, slices in row order), then the
// merged footer: it is made by Cloud Storage compose (32 sources a call; composites composed again
// in a tree), every source pinned by its generation, into a temporary object whose size and
// CRC32C are predicted here from the parts' and checked against what the bucket reports. No byte
// of the file passes through the job. The local directory bucket concatenates instead.
import { randomBytes } from "node:crypto";
import { crc32c } from "@node-rs/crc32";
import type { Bucket, ObjectInfo, SourceObject } from "../bucket/port.ts";
import { crc32cBase64 } from "../checksum.ts";
import { crc32cOfConcatenation } from "../crc32c-combine.ts";
import { mergeFooters, parquetTrailer, planPart, type MergedFooter, type PlacedPart } from "../parquet/index.ts";
import { assemblyPrefix, type StagedPart } from "./store.ts";

export const PARQUET_MAGIC = Buffer.from("PAR1", "latin1");

/** The parts in file order, each with where its bytes land, and the merged footer's body. */
export interface Layout {
  parts: StagedPart[];
  placedAt: number[];
  /** Bytes from the start of the file to the end of the last part's chunks. */
  dataEnd: number;
  footer: MergedFooter;
}

/** Orders the parts, places them after `PAR1` and merges their footers (checking they tile the file). */
export function layOut(parts: readonly StagedPart[], rowGroupRows: readonly number[]): Layout {
  const ordered = [...parts].sort((a, b) => a.table - b.table || a.firstRowGroup - b.firstRowGroup);
  const placedAt: number[] = [];
  let at = PARQUET_MAGIC.length;
  const placed: PlacedPart[] = ordered.map((p) => {
    placedAt.push(at);
    const plan = planPart(p.footerThrift, `${p.label} (${p.chunks.name})`);
    const out = { plan, table: p.table, firstRowGroup: p.firstRowGroup, placedAt: at };
    at += p.chunks.bytes;
    return out;
  });
  return { parts: ordered, placedAt, dataEnd: at, footer: mergeFooters(placed, rowGroupRows) };
}

/** The bytes that close the file: the footer (body, then the tail for `kv`) and the trailer. */
export function footerObject(layout: Layout, kv: Record<string, string>): Buffer {
  const tail = layout.footer.tail(kv);
  const thriftLength = layout.footer.body.length + tail.length;
  return Buffer.concat([layout.footer.body, tail, parquetTrailer(thriftLength)]);
}

/** A source of the file with the size and CRC32C it contributes. */
interface Piece extends SourceObject {
  bytes: number;
  crc32c: number;
}

export interface ComposeReport {
  /** The verified temporary object holding the whole file. */
  object: ObjectInfo;
  /** Its predicted size and CRC32C (what the bucket reported matched them). */
  bytes: number;
  crc32c: number;
  composeCalls: number;
  /** Where the assembly's own objects are (removed with the rest of the staging prefix). */
  prefix: string;
}

type ComposeBucket = Pick<Bucket, "put" | "compose" | "maxComposeSources">;

/**
 * Uploads the head and footer objects, then composes head + parts + footer into
 * `<assembly prefix>/training.parquet` in as few levels as the bucket's limit allows, checking
 * every composite against its predicted size and CRC32C. Objects of an interrupted assembly are
 * left under their own random prefix, for cleanup.
 */
export async function composeFile(
  bucket: ComposeBucket,
  pair: string,
  layout: Layout,
  footer: Buffer,
  writeTemp: (name: string, data: Buffer) => Promise<string>,
  signal?: AbortSignal,
): Promise<ComposeReport> {
  const prefix = assemblyPrefix(pair, randomBytes(6).toString("hex"));
  const upload = async (name: string, data: Buffer): Promise<Piece> => {
    const crc = crc32c(data);
    const path = await writeTemp(name, data);
    const put = await bucket.put(path, `${prefix}${name}`, { crc32c: crc32cBase64(crc) });
    if (!put.generation) throw new Error(`${put.uri}: the bucket reported no generation`);
    return { name: `${prefix}${name}`, generation: put.generation, bytes: data.length, crc32c: crc };
  };
  const head = await upload("head", PARQUET_MAGIC);
  const tail = await upload("footer", footer);
  let level: Piece[] = [head, ...layout.parts.map((p) => ({ ...p.chunks })), tail];
  const total = { bytes: level.reduce((n, p) => n + p.bytes, 0), crc32c: crc32cOfConcatenation(level) };
  const max = bucket.maxComposeSources;
  let calls = 0;
  let depth = 0;
  const composeInto = async (sources: Piece[], name: string): Promise<Piece & { info: ObjectInfo }> => {
    signal?.throwIfAborted();
    const expected = { bytes: sources.reduce((n, p) => n + p.bytes, 0), crc32c: crc32cOfConcatenation(sources) };
    const info = await bucket.compose(
      sources.map(({ name: n, generation }) => ({ name: n, generation })),
      name,
      { ifGenerationMatch: "0", contentType: "application/vnd.apache.parquet", expected: { bytes: expected.bytes, crc32c: crc32cBase64(expected.crc32c) } },
    );
    calls += 1;
    if (!info.generation) throw new Error(`${name}: the bucket reported no generation`);
    return { name, generation: info.generation, bytes: expected.bytes, crc32c: expected.crc32c, info };
  };
  while (level.length > max) {
    depth += 1;
    const next: Piece[] = [];
    for (let i = 0; i < level.length; i += max) {
      const group = level.slice(i, i + max);
      next.push(group.length === 1 ? group[0]! : await composeInto(group, `${prefix}L${depth}-${String(next.length).padStart(5, "0")}`));
    }
    level = next;
  }
  const file = await composeInto(level, `${prefix}training.parquet`);
  return { object: file.info, bytes: total.bytes, crc32c: total.crc32c, composeCalls: calls, prefix };
}
