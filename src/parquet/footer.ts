/**
 * Reading parquet footers without reading the file: the last 8 bytes, then the metadata. The
 * thrift compact protocol primitives here are shared with the footer writer (merged-footer.ts).
 *
 * `summarizeFooter` walks the thrift bytes for what validation and the tools need (row and column
 * counts, names, per-row-group sizes, null counts, key/value metadata) in O(columns) memory,
 * whatever the number of row groups; no decoded FileMetaData is ever built.
 */
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { JobError } from "../errors.ts";

// ---------------------------------------------------------------------------------------------
// Thrift compact protocol, low level (shared with concat.ts)
// ---------------------------------------------------------------------------------------------

export const T_STOP = 0;
export const T_TRUE = 1;
export const T_FALSE = 2;
export const T_BYTE = 3;
export const T_I16 = 4;
export const T_I32 = 5;
export const T_I64 = 6;
export const T_DOUBLE = 7;
export const T_BINARY = 8;
export const T_LIST = 9;
export const T_SET = 10;
export const T_MAP = 11;
export const T_STRUCT = 12;
export const T_UUID = 13;

export class Reader {
  b: Uint8Array;
  p: number;
  constructor(b: Uint8Array, p = 0) {
    this.b = b;
    this.p = p;
  }
  u8(): number {
    const v = this.b[this.p++];
    if (v === undefined) throw new Error("thrift: unexpected end of footer");
    return v;
  }
  /** Unsigned varint: a number below 2^49, else a bigint. */
  rawVarint(): number | bigint {
    const start = this.p;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      const byte = this.u8();
      result += (byte & 0x7f) * mul;
      if (byte < 0x80) return result;
      mul *= 128;
    }
    this.p = start;
    let big = 0n;
    let shift = 0n;
    for (;;) {
      const byte = this.u8();
      big |= BigInt(byte & 0x7f) << shift;
      if (byte < 0x80) return big;
      shift += 7n;
      if (shift > 63n) throw new Error("thrift: varint too long");
    }
  }
  /** Unsigned varint as a number; throws beyond 2^53. */
  varint(): number {
    const v = this.rawVarint();
    if (typeof v === "number") return v;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`thrift: integer ${v} exceeds 2^53`);
    return Number(v);
  }
  /** Zigzag varint (i16/i32/i64) as a number; throws beyond +-2^53. */
  zigzag(): number {
    const v = this.rawVarint();
    if (typeof v === "number") return v % 2 === 0 ? v / 2 : -(v + 1) / 2;
    const d = (v >> 1n) ^ -(v & 1n);
    if (d > BigInt(Number.MAX_SAFE_INTEGER) || d < -BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new Error(`thrift: integer ${d} exceeds 2^53`);
    }
    return Number(d);
  }
  skipVarint(): void {
    while (this.u8() >= 0x80);
  }
  /** Reads a list/set header: [elementType, size]. */
  listHeader(): [number, number] {
    const h = this.u8();
    let size = h >> 4;
    if (size === 15) size = this.varint();
    return [h & 0x0f, size];
  }
  skip(type: number, inList = false): void {
    switch (type) {
      case T_TRUE:
      case T_FALSE:
        if (inList) this.p++;
        return;
      case T_BYTE:
        this.p++;
        return;
      case T_I16:
      case T_I32:
      case T_I64:
        this.skipVarint();
        return;
      case T_DOUBLE:
        this.p += 8;
        return;
      case T_UUID:
        this.p += 16;
        return;
      case T_BINARY: {
        const n = this.varint();
        this.p += n;
        return;
      }
      case T_LIST:
      case T_SET: {
        const [et, n] = this.listHeader();
        for (let i = 0; i < n; i++) this.skip(et, true);
        return;
      }
      case T_MAP: {
        const n = this.varint();
        if (n === 0) return;
        const kv = this.u8();
        for (let i = 0; i < n; i++) {
          this.skip(kv >> 4, true);
          this.skip(kv & 0x0f, true);
        }
        return;
      }
      case T_STRUCT: {
        let fid = 0;
        for (;;) {
          const h = this.u8();
          const t = h & 0x0f;
          if (t === T_STOP) return;
          fid = h >> 4 ? fid + (h >> 4) : this.zigzag();
          this.skip(t);
        }
      }
      default:
        throw new Error(`thrift: unknown compact type ${type} at byte ${this.p}`);
    }
  }
}

/** Iterates the fields of a struct: calls `field(fid, type)` positioned at each value. */
export function readStruct(r: Reader, field: (fid: number, type: number) => void): void {
  let fid = 0;
  for (;;) {
    const h = r.u8();
    const type = h & 0x0f;
    if (type === T_STOP) return;
    fid = h >> 4 ? fid + (h >> 4) : r.zigzag();
    const before = r.p;
    field(fid, type);
    if (r.p === before && !(type === T_TRUE || type === T_FALSE)) r.skip(type);
  }
}

export class Sink {
  buf: Uint8Array;
  len = 0;
  constructor(initial = 1 << 16) {
    this.buf = new Uint8Array(initial);
  }
  ensure(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }
  u8(v: number): void {
    this.ensure(1);
    this.buf[this.len++] = v;
  }
  varint(v: number): void {
    this.ensure(10);
    while (v >= 0x80) {
      this.buf[this.len++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[this.len++] = v;
  }
  zigzag(v: number): void {
    if (!Number.isSafeInteger(v)) throw new Error(`thrift: cannot encode ${v}`);
    if (Math.abs(v) < 2 ** 50) {
      this.varint(v >= 0 ? v * 2 : -v * 2 - 1);
      return;
    }
    const b = BigInt(v);
    let z = b >= 0n ? b * 2n : -b * 2n - 1n;
    this.ensure(10);
    while (z >= 0x80n) {
      this.buf[this.len++] = Number(z & 0x7fn) | 0x80;
      z >>= 7n;
    }
    this.buf[this.len++] = Number(z);
  }
  bytes(src: Uint8Array, start: number, end: number): void {
    const n = end - start;
    this.ensure(n);
    this.buf.set(src.subarray(start, end), this.len);
    this.len += n;
  }
  /** Writes a field header; returns the field id to use as the next `lastFid`. */
  field(type: number, fid: number, lastFid: number): number {
    const delta = fid - lastFid;
    if (delta <= 0) throw new Error(`thrift: non-monotonic field id ${fid} after ${lastFid}`);
    if (delta <= 15) this.u8((delta << 4) | type);
    else {
      this.u8(type);
      this.zigzag(fid);
    }
    return fid;
  }
  listHeader(elemType: number, size: number): void {
    if (size < 15) this.u8((size << 4) | elemType);
    else {
      this.u8(0xf0 | elemType);
      this.varint(size);
    }
  }
  string(s: string): void {
    const b = Buffer.from(s, "utf8");
    this.varint(b.length);
    this.bytes(b, 0, b.length);
  }
  take(): Uint8Array {
    const out = this.buf.subarray(0, this.len);
    this.len = 0;
    return out;
  }
}


// ---------------------------------------------------------------------------------------------
// Raw footer
// ---------------------------------------------------------------------------------------------

const MAGIC = 0x31524150; // "PAR1" little-endian

export interface RawFooter {
  /** The thrift compact FileMetaData bytes (without length and magic). */
  thrift: Uint8Array;
  fileBytes: number;
  /** Offset in the file where the thrift FileMetaData begins. */
  footerStart: number;
}

async function readExactly(fh: FileHandle, buf: Uint8Array, position: number, path: string): Promise<void> {
  let done = 0;
  while (done < buf.byteLength) {
    const { bytesRead } = await fh.read(buf, done, buf.byteLength - done, position + done);
    if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at ${position + done}`);
    done += bytesRead;
  }
}

/** The failures of a parquet file this layer reports, each naming the file and what to do. */
export const ParquetErrors = {
  notParquet: (path: string, why: string) =>
    new JobError(`${path} is not a parquet file (${why})`, { reason: "parquet-invalid", fix: `check that ${path} is a complete parquet file; a truncated or damaged one must be written again` }),
  badFooter: (path: string, cause: unknown) =>
    new JobError(`${path}: its parquet footer cannot be read (${(cause as Error).message})`, { reason: "parquet-invalid", fix: `the file is damaged or not written by a parquet writer; write ${path} again`, cause }),
};

/** Read only the footer of a parquet file: the last 8 bytes, then the metadata. */
export async function readRawFooter(path: string): Promise<RawFooter> {
  const fh = await open(path, "r");
  try {
    const { size } = await fh.stat();
    if (size < 12) throw ParquetErrors.notParquet(path, `${size} bytes`);
    const end = Buffer.alloc(8);
    await readExactly(fh, end, size - 8, path);
    if (end.readUInt32LE(4) !== MAGIC) throw ParquetErrors.notParquet(path, "no trailing PAR1");
    const len = end.readUInt32LE(0);
    if (len + 12 > size) throw ParquetErrors.notParquet(path, `footer length ${len} exceeds the file's ${size} bytes`);
    const thrift = new Uint8Array(len);
    await readExactly(fh, thrift, size - 8 - len, path);
    return { thrift, fileBytes: size, footerStart: size - 8 - len };
  } finally {
    await fh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Summary (thrift walk, no FileMetaData objects)
// ---------------------------------------------------------------------------------------------

export interface RowGroupSummary {
  numRows: number;
  totalByteSize: number;
}

export interface FooterSummary {
  /** Total rows (FileMetaData.num_rows). */
  numRows: number;
  /** Top-level column names in schema order (for a flat schema: the leaf columns). */
  columnNames: string[];
  /** Leaf column paths (joined with ".") in column-chunk order. */
  leafPaths: string[];
  rowGroups: RowGroupSummary[];
  /**
   * Null count per leaf column (path joined with "."), summed over row groups from the column
   * chunk statistics; `undefined` when any row group lacks the null_count statistic.
   */
  nullCounts: Map<string, number | undefined>;
  /** Footer key/value metadata (a missing value becomes ""). */
  keyValueMetadata: Record<string, string>;
  createdBy: string | undefined;
  /** Size of the whole file in bytes. */
  fileBytes: number;
  /** Size of the thrift-encoded FileMetaData in bytes. */
  footerBytes: number;
}

const utf8 = new TextDecoder();

export function readString(r: Reader): string {
  const n = r.varint();
  const s = utf8.decode(r.b.subarray(r.p, r.p + n));
  r.p += n;
  return s;
}

export interface SchemaWalk {
  columnNames: string[];
  leafPaths: string[];
}

/** Reads the schema list (positioned at its list header). */
export function walkSchema(r: Reader): SchemaWalk {
  const [, n] = r.listHeader();
  const elements: { name: string; children: number; leaf: boolean }[] = [];
  for (let i = 0; i < n; i++) {
    let name = "";
    let children = 0;
    let typed = false;
    readStruct(r, (fid) => {
      if (fid === 1) {
        typed = true;
        r.zigzag();
      } else if (fid === 4) name = readString(r);
      else if (fid === 5) children = r.zigzag();
    });
    elements.push({ name, children, leaf: typed && children === 0 });
  }
  const columnNames: string[] = [];
  const leafPaths: string[] = [];
  let i = 1;
  const walk = (prefix: string[]): void => {
    const el = elements[i++];
    if (!el) throw new Error("parquet schema is truncated");
    const path = [...prefix, el.name];
    if (el.leaf) leafPaths.push(path.join("."));
    for (let c = 0; c < el.children; c++) walk(path);
  };
  for (let c = 0; c < (elements[0]?.children ?? 0); c++) {
    const el = elements[i];
    if (el) columnNames.push(el.name);
    walk([]);
  }
  return { columnNames, leafPaths };
}

/** Computes the summary from the raw thrift FileMetaData. */
export function summarizeFooter(thrift: Uint8Array, fileBytes: number): FooterSummary {
  const r = new Reader(thrift);
  let schema: SchemaWalk = { columnNames: [], leafPaths: [] };
  let numRows = 0;
  let createdBy: string | undefined;
  const keyValueMetadata: Record<string, string> = {};
  const rowGroups: RowGroupSummary[] = [];
  let sums: number[] = [];
  let missing: boolean[] = [];
  let rowGroupsAt = -1;

  readStruct(r, (fid, type) => {
    if (fid === 2) {
      schema = walkSchema(r);
    } else if (fid === 3) {
      numRows = r.zigzag();
    } else if (fid === 4) {
      rowGroupsAt = r.p; // walked after the schema is known
      r.skip(type);
    } else if (fid === 5) {
      const [, n] = r.listHeader();
      for (let i = 0; i < n; i++) {
        let key = "";
        let value = "";
        readStruct(r, (f) => {
          if (f === 1) key = readString(r);
          else if (f === 2) value = readString(r);
        });
        keyValueMetadata[key] = value;
      }
    } else if (fid === 6) {
      createdBy = readString(r);
    }
  });

  const leaves = schema.leafPaths.length;
  sums = new Array<number>(leaves).fill(0);
  missing = new Array<boolean>(leaves).fill(false);
  if (rowGroupsAt >= 0) {
    r.p = rowGroupsAt;
    const [, n] = r.listHeader();
    for (let g = 0; g < n; g++) {
      let rows = 0;
      let totalByteSize = 0;
      readStruct(r, (fid) => {
        if (fid === 2) totalByteSize = r.zigzag();
        else if (fid === 3) rows = r.zigzag();
        else if (fid === 1) {
          const [, cols] = r.listHeader();
          if (cols !== leaves) throw new Error(`parquet row group ${g} has ${cols} column chunks, schema has ${leaves} leaves`);
          for (let c = 0; c < cols; c++) {
            let nullCount = -1;
            readStruct(r, (cf) => {
              if (cf !== 3) return;
              readStruct(r, (mf) => {
                if (mf !== 12) return;
                readStruct(r, (sf) => {
                  if (sf === 3) nullCount = r.zigzag();
                });
              });
            });
            if (nullCount < 0) missing[c] = true;
            else sums[c] = (sums[c] ?? 0) + nullCount;
          }
        }
      });
      rowGroups.push({ numRows: rows, totalByteSize });
    }
  }

  const nullCounts = new Map<string, number | undefined>();
  schema.leafPaths.forEach((p, c) => nullCounts.set(p, missing[c] ? undefined : sums[c]));
  return {
    numRows,
    columnNames: schema.columnNames,
    leafPaths: schema.leafPaths,
    rowGroups,
    nullCounts,
    keyValueMetadata,
    createdBy,
    fileBytes,
    footerBytes: thrift.length,
  };
}

/** The footer summary of a parquet file (memory O(columns)). */
export async function readFooterSummary(path: string): Promise<FooterSummary> {
  const raw = await readRawFooter(path);
  try {
    return summarizeFooter(raw.thrift, raw.fileBytes);
  } catch (err) {
    throw ParquetErrors.badFooter(path, err);
  }
}
