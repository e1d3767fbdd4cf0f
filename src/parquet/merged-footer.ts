/**
 * The training file's footer, computed from the footers of its parts, so the file itself can be
 * assembled by concatenation (Cloud Storage compose) without a byte of it passing through the job.
 *
 * A part is one table (or one slice of a table's row groups) aligned to the target's rows and
 * written by polars with row groups on the output's boundaries. Its column-chunk bytes [start,
 * end) become one object; the file is `PAR1`, every part's chunk bytes in part order, then the
 * footer built here: the schema is every table's columns in table order; row group g lists, table
 * by table, the chunks of the part holding g, with each offset moved from where it was in the
 * part file to where the part's bytes land in the file (`placedAt`). Parquet finds every column
 * chunk through these offsets, so a row group's chunks need not be adjacent.
 *
 * Copied verbatim from the parts: schema elements, every column-chunk field (statistics with null
 * counts, encodings, ...) except offsets (rebased), page indexes and bloom filters (dropped: they
 * lie outside the chunk bytes that are copied), and the optional page encoding stats and size
 * statistics (dropped: readers do not need them, and at 17,000 columns x 45 row groups their ~20
 * bytes a chunk would push the footer past its limit); created_by and column orders. Rebuilt: row groups
 * (columns, total_byte_size and total_compressed_size summed, num_rows, file_offset, ordinal).
 * Key/value metadata: the parts' (first wins) minus "ARROW:schema" (it describes one part's
 * columns), then the caller's. The body (everything before the key/value metadata) is built once;
 * the tail is built per call, so the manifest can go in after validation without a second pass.
 */
import { Reader, Sink, T_BINARY, T_I16, T_I32, T_LIST, T_STOP, T_STRUCT, readStruct } from "./thrift.ts";
import type { PartPlan } from "./part-plan.ts";
import {
  CC_COLUMN_INDEX_LENGTH,
  CC_FILE_OFFSET,
  CC_META,
  CC_OFFSET_INDEX_OFFSET,
  CMD_BLOOM_LENGTH,
  CMD_BLOOM_OFFSET,
  CMD_DATA_PAGE_OFFSET,
  CMD_DICT_PAGE_OFFSET,
  CMD_ENCODING_STATS,
  CMD_INDEX_PAGE_OFFSET,
  CMD_SIZE_STATISTICS,
  FMD_COLUMN_ORDERS,
  FMD_CREATED_BY,
  FMD_KV,
  FMD_NUM_ROWS,
  FMD_ROW_GROUPS,
  FMD_SCHEMA,
  FMD_VERSION,
  RG_COLUMNS,
  RG_FILE_OFFSET,
  RG_NUM_ROWS,
  RG_ORDINAL,
  RG_TOTAL_BYTE_SIZE,
  RG_TOTAL_COMPRESSED,
  SE_NAME,
  SE_NUM_CHILDREN,
  copyField,
  rebase,
  writeI64Field,
} from "./fields.ts";

const ARROW_SCHEMA_KEY = "ARROW:schema";

/** One part in file order: its plan, which table it belongs to, and where it goes. */
export interface PlacedPart {
  plan: PartPlan;
  /** Output table (schema position) this part holds rows of; parts of one table share a schema. */
  table: number;
  /** The output row group of the part's first row group. */
  firstRowGroup: number;
  /** Offset in the assembled file where the part's bytes [dataStart, dataEnd) begin. */
  placedAt: number;
}

export interface MergedFooter {
  /** FileMetaData fields 1-4 (version, schema, num_rows, row_groups). */
  body: Uint8Array;
  /** The rest of the FileMetaData (key/value metadata, created_by, column orders, stop) for `kv`. */
  tail(kv: Record<string, string>): Uint8Array;
  rows: number;
  rowGroups: number;
  columns: number;
}

/**
 * Checks that the parts tile the file (every table has exactly one part per output row group,
 * row counts as planned, one schema per table, no column twice) and builds the merged footer.
 * `parts` must be in file order; `rowGroupRows` is the output's row-group plan.
 */
export function mergeFooters(parts: readonly PlacedPart[], rowGroupRows: readonly number[]): MergedFooter {
  if (parts.length === 0) throw new Error("mergeFooters: no parts");
  const { holder, columns } = tileParts(parts, rowGroupRows);
  const body = writeBody(holder, columns, rowGroupRows);
  return { body, tail: tailWriter(holder, columns), rows: rowGroupRows.reduce((a, b) => a + b, 0), rowGroups: rowGroupRows.length, columns };
}

/** holder[t][g]: the part of table t holding output row group g, tables in schema order. */
type Holder = PlacedPart[][];

function tileParts(parts: readonly PlacedPart[], rowGroupRows: readonly number[]): { holder: Holder; columns: number } {
  const tables = new Map<number, PlacedPart[]>();
  for (const p of parts) tables.set(p.table, [...(tables.get(p.table) ?? []), p]);
  const owner = new Map<string, string>();
  const holder: Holder = [];
  let columns = 0;
  for (const t of [...tables.keys()].sort((a, b) => a - b)) {
    const own = tables
      .get(t)!
      .slice()
      .sort((a, b) => a.firstRowGroup - b.firstRowGroup);
    const first = own[0]!.plan;
    const groups: PlacedPart[] = [];
    for (const p of own) {
      if (p.plan.columns !== first.columns || p.plan.schemaElements.some((el, c) => !sameBytes(el, first.schemaElements[c]!))) {
        throw new Error(`${p.plan.label}: its schema differs from ${first.label}, another part of the same table`);
      }
      if (p.firstRowGroup !== groups.length) {
        throw new Error(`${p.plan.label}: starts at row group ${p.firstRowGroup}, but the parts before it end at ${groups.length}`);
      }
      p.plan.rowGroupRows.forEach((rows, i) => {
        const g = p.firstRowGroup + i;
        if (rows !== rowGroupRows[g])
          throw new Error(`${p.plan.label}: row group ${i} has ${rows} rows, the plan has ${rowGroupRows[g] ?? "no row group"} at ${g}`);
        groups.push(p);
      });
    }
    if (groups.length !== rowGroupRows.length) throw new Error(`table ${t}: its parts cover ${groups.length} of ${rowGroupRows.length} row groups`);
    for (const name of first.names) {
      const prev = owner.get(name);
      if (prev !== undefined) throw new Error(`duplicate column "${name}": in ${prev} and ${first.label}`);
      owner.set(name, first.label);
    }
    holder.push(groups);
    columns += first.columns;
  }
  return { holder, columns };
}

/** FileMetaData fields 1-4: version, schema (a root and every table's elements), num_rows, row groups. */
function writeBody(holder: Holder, columns: number, rowGroupRows: readonly number[]): Uint8Array {
  const firstPlan = holder[0]![0]!.plan;
  const sink = new Sink(1 << 20);
  let last = sink.field(T_I32, FMD_VERSION, 0);
  sink.zigzag(firstPlan.version ?? 1);
  last = sink.field(T_LIST, FMD_SCHEMA, last);
  sink.listHeader(T_STRUCT, columns + 1);
  sink.u8((SE_NAME << 4) | T_BINARY);
  sink.string(firstPlan.rootName);
  sink.u8(((SE_NUM_CHILDREN - SE_NAME) << 4) | T_I32);
  sink.zigzag(columns);
  sink.u8(T_STOP);
  for (const groups of holder) for (const el of groups[0]!.plan.schemaElements) sink.bytes(el, 0, el.length);
  last = writeI64Field(
    sink,
    FMD_NUM_ROWS,
    last,
    rowGroupRows.reduce((a, b) => a + b, 0),
  );
  sink.field(T_LIST, FMD_ROW_GROUPS, last);
  sink.listHeader(T_STRUCT, rowGroupRows.length);
  for (let g = 0; g < rowGroupRows.length; g++) writeRowGroup(sink, holder, columns, g, rowGroupRows[g]!);
  return sink.take().slice();
}

/** Output row group g: each table's chunks from the part holding g, offsets rebased to the file. */
function writeRowGroup(sink: Sink, holder: Holder, columns: number, g: number, rows: number): void {
  let rgLast = sink.field(T_LIST, RG_COLUMNS, 0);
  sink.listHeader(T_STRUCT, columns);
  let uncompressed = 0;
  let compressed = 0;
  let fileOffset = Number.POSITIVE_INFINITY;
  for (const groups of holder) {
    const part = groups[g]!;
    const plan = part.plan;
    const local = g - part.firstRowGroup;
    uncompressed += plan.uncompressed[local]!;
    const delta = part.placedAt - plan.dataStart;
    const r = new Reader(plan.thrift, plan.chunksAt[2 * local]);
    for (let c = 0; c < plan.columns; c++) {
      const i = local * plan.columns + c;
      const start = plan.chunkStart[i]!;
      const size = plan.chunkSize[i]!;
      transcodeColumnChunk(r, sink, delta, start, start + size, `${plan.label} row group ${local} column ${c}`);
      compressed += size;
      fileOffset = Math.min(fileOffset, start + delta);
    }
  }
  rgLast = writeI64Field(sink, RG_TOTAL_BYTE_SIZE, rgLast, uncompressed);
  rgLast = writeI64Field(sink, RG_NUM_ROWS, rgLast, rows);
  rgLast = writeI64Field(sink, RG_FILE_OFFSET, rgLast, fileOffset);
  rgLast = writeI64Field(sink, RG_TOTAL_COMPRESSED, rgLast, compressed);
  if (g <= 0x7fff) {
    sink.field(T_I16, RG_ORDINAL, rgLast);
    sink.zigzag(g);
  }
  sink.u8(T_STOP);
}

/** The rest of the FileMetaData for given key/value metadata: the parts' (first wins, no Arrow schema), then the caller's. */
function tailWriter(holder: Holder, columns: number): (extra: Record<string, string>) => Uint8Array {
  const firstPlan = holder[0]![0]!.plan;
  const partKv = new Map<string, string | undefined>();
  for (const groups of holder) for (const [k, v] of groups[0]!.plan.kv) if (k !== ARROW_SCHEMA_KEY && !partKv.has(k)) partKv.set(k, v);
  const withOrders = holder.every((groups) => groups[0]!.plan.columnOrders !== undefined);
  return (extra) => {
    const kv = new Map(partKv);
    for (const [k, v] of Object.entries(extra)) kv.set(k, v);
    const out = new Sink(1 << 12);
    let tLast = FMD_ROW_GROUPS;
    if (kv.size > 0) {
      tLast = out.field(T_LIST, FMD_KV, tLast);
      out.listHeader(T_STRUCT, kv.size);
      for (const [k, v] of kv) {
        out.u8((1 << 4) | T_BINARY);
        out.string(k);
        if (v !== undefined) {
          out.u8((1 << 4) | T_BINARY);
          out.string(v);
        }
        out.u8(T_STOP);
      }
    }
    if (firstPlan.createdBy) {
      tLast = out.field(T_BINARY, FMD_CREATED_BY, tLast);
      out.bytes(firstPlan.createdBy, 0, firstPlan.createdBy.length);
    }
    if (withOrders) {
      out.field(T_LIST, FMD_COLUMN_ORDERS, tLast);
      out.listHeader(T_STRUCT, columns);
      for (const groups of holder) for (const o of groups[0]!.plan.columnOrders ?? []) out.bytes(o, 0, o.length);
    }
    out.u8(T_STOP);
    return out.take().slice();
  };
}

/** The bytes that end a parquet file after its FileMetaData: its length (4 bytes LE) and "PAR1". */
export function parquetTrailer(footerLength: number): Uint8Array {
  if (footerLength > 0xffffffff) throw new Error(`footer of ${footerLength} bytes exceeds the 4 GiB parquet limit`);
  const out = Buffer.alloc(8);
  out.writeUInt32LE(footerLength, 0);
  out.write("PAR1", 4, "latin1");
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function transcodeColumnChunk(r: Reader, out: Sink, delta: number, start: number, end: number, where: string): void {
  let last = 0;
  readStruct(r, (fid, type) => {
    if (fid === CC_FILE_OFFSET) {
      last = writeI64Field(out, fid, last, rebase(r.zigzag(), delta));
    } else if (fid === CC_META) {
      last = out.field(T_STRUCT, fid, last);
      let mLast = 0;
      readStruct(r, (mf, mt) => {
        if (mf === CMD_DATA_PAGE_OFFSET || mf === CMD_DICT_PAGE_OFFSET || mf === CMD_INDEX_PAGE_OFFSET) {
          const v = r.zigzag();
          if (v > 0 && mf !== CMD_INDEX_PAGE_OFFSET && (v < start || v >= end))
            throw new Error(`${where}: page offset ${v} outside its column chunk [${start}, ${end})`);
          mLast = writeI64Field(out, mf, mLast, rebase(v, delta));
        } else if (mf === CMD_BLOOM_OFFSET || mf === CMD_BLOOM_LENGTH || mf === CMD_ENCODING_STATS || mf === CMD_SIZE_STATISTICS) {
          r.skip(mt);
        } else {
          mLast = copyField(r, out, mt, mf, mLast);
        }
      });
      out.u8(T_STOP);
    } else if (fid >= CC_OFFSET_INDEX_OFFSET && fid <= CC_COLUMN_INDEX_LENGTH) {
      r.skip(type);
    } else {
      last = copyField(r, out, type, fid, last);
    }
  });
  out.u8(T_STOP);
}
