/**
 * Reading parquet footers without reading the file: the last 8 bytes, then the metadata. The
 * thrift compact protocol primitives are thrift.ts's.
 *
 * `summarizeFooter` walks the thrift bytes for what validation and the tools need (row and column
 * counts, names, per-row-group sizes, null counts, key/value metadata) in O(columns) memory,
 * whatever the number of row groups; no decoded FileMetaData is ever built.
 */
import { open } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { JobError } from "../errors.ts";
import { Reader, readStruct } from "./thrift.ts";

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
    new JobError(`${path} is not a parquet file (${why})`, {
      reason: "parquet-invalid",
      fix: `check that ${path} is a complete parquet file; a truncated or damaged one must be written again`,
    }),
  badFooter: (path: string, cause: unknown) =>
    new JobError(`${path}: its parquet footer cannot be read (${(cause as Error).message})`, {
      reason: "parquet-invalid",
      fix: `the file is damaged or not written by a parquet writer; write ${path} again`,
      cause,
    }),
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
  const sums = new Array<number>(leaves).fill(0);
  const missing = new Array<boolean>(leaves).fill(false);
  if (rowGroupsAt >= 0) {
    r.p = rowGroupsAt;
    const [, n] = r.listHeader();
    for (let g = 0; g < n; g++) rowGroups.push(walkRowGroup(r, g, leaves, sums, missing));
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

/** One row group's rows and size; its chunks' null counts are added to `sums` (`missing` where a chunk has none). */
function walkRowGroup(r: Reader, g: number, leaves: number, sums: number[], missing: boolean[]): RowGroupSummary {
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
  return { numRows: rows, totalByteSize };
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
