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
import { Reader, Sink, T_BINARY, T_I16, T_I32, T_LIST, T_STOP, T_STRUCT, readStruct } from "./footer.ts";
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
  FMD_ENCRYPTION_ALGORITHM,
  FMD_FOOTER_SIGNING_KEY,
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
  SE_TYPE,
  copyField,
  readChunkPages,
  rebase,
  writeI64Field,
} from "./fields.ts";

const ARROW_SCHEMA_KEY = "ARROW:schema";
const utf8 = new TextDecoder();

/** What the assembly needs of one part file's footer, read once. */
export interface PartPlan {
  label: string;
  thrift: Uint8Array;
  numRows: number;
  columns: number;
  names: string[];
  /** Raw thrift bytes of each schema element (without the root), to copy. */
  schemaElements: Uint8Array[];
  columnOrders: Uint8Array[] | undefined;
  rowGroupRows: number[];
  /** Per row group: [start, end) of its column-chunk list inside `thrift`. */
  chunksAt: Float64Array;
  /** Per row group x column: start of the chunk's bytes in the part file, and their size. */
  chunkStart: Float64Array;
  chunkSize: Float64Array;
  /** Per row group: sum of total_uncompressed_size. */
  uncompressed: Float64Array;
  kv: [string, string | undefined][];
  createdBy: Uint8Array | undefined;
  version: number | undefined;
  rootName: string;
  /** Where the chunk bytes begin and end in the part file: the object staged for the part. */
  dataStart: number;
  dataEnd: number;
}

function readString(r: Reader): string {
  const n = r.varint();
  const s = utf8.decode(r.b.subarray(r.p, r.p + n));
  r.p += n;
  return s;
}

/** Reads a part's footer: schema, row groups and where every column chunk lies. Throws naming `label`. */
export function planPart(thrift: Uint8Array, label: string): PartPlan {
  const plan: PartPlan = {
    label,
    thrift,
    numRows: 0,
    columns: 0,
    names: [],
    schemaElements: [],
    columnOrders: undefined,
    rowGroupRows: [],
    chunksAt: new Float64Array(0),
    chunkStart: new Float64Array(0),
    chunkSize: new Float64Array(0),
    uncompressed: new Float64Array(0),
    kv: [],
    createdBy: undefined,
    version: undefined,
    rootName: "schema",
    dataStart: 0,
    dataEnd: 0,
  };
  const r = new Reader(thrift);
  let rowGroupsAt = -1;
  let columnOrdersAt = -1;
  let sawSchema = false;
  readStruct(r, (fid, type) => {
    if (fid === FMD_SCHEMA) {
      sawSchema = true;
      planSchema(r, plan);
    } else if (fid === FMD_VERSION) plan.version = r.zigzag();
    else if (fid === FMD_NUM_ROWS) plan.numRows = r.zigzag();
    else if (fid === FMD_ROW_GROUPS) {
      rowGroupsAt = r.p;
      r.skip(type);
    } else if (fid === FMD_COLUMN_ORDERS) {
      columnOrdersAt = r.p;
      r.skip(type);
    } else if (fid === FMD_KV) {
      const [, n] = r.listHeader();
      for (let i = 0; i < n; i++) {
        let key = "";
        let value: string | undefined;
        readStruct(r, (f) => {
          if (f === 1) key = readString(r);
          else if (f === 2) value = readString(r);
        });
        plan.kv.push([key, value]);
      }
    } else if (fid === FMD_CREATED_BY) {
      const start = r.p;
      r.skip(type);
      plan.createdBy = thrift.slice(start, r.p);
    } else if (fid === FMD_ENCRYPTION_ALGORITHM || fid === FMD_FOOTER_SIGNING_KEY) {
      throw new Error(`${label}: encrypted parquet files are not supported`);
    }
  });
  if (!sawSchema) throw new Error(`${label}: footer has no schema`);
  if (columnOrdersAt >= 0) {
    r.p = columnOrdersAt;
    const [, n] = r.listHeader();
    if (n !== plan.columns) throw new Error(`${label}: ${n} column orders for ${plan.columns} columns`);
    plan.columnOrders = [];
    for (let c = 0; c < n; c++) {
      const start = r.p;
      r.skip(T_STRUCT);
      plan.columnOrders.push(thrift.slice(start, r.p));
    }
  }
  if (rowGroupsAt >= 0) {
    r.p = rowGroupsAt;
    const [, n] = r.listHeader();
    plan.chunksAt = new Float64Array(2 * n);
    plan.chunkStart = new Float64Array(n * plan.columns);
    plan.chunkSize = new Float64Array(n * plan.columns);
    plan.uncompressed = new Float64Array(n);
    for (let g = 0; g < n; g++) planRowGroup(r, plan, g);
  }
  const sum = plan.rowGroupRows.reduce((s, x) => s + x, 0);
  if (sum !== plan.numRows) throw new Error(`${label}: num_rows ${plan.numRows} != sum of row groups ${sum}`);

  // The chunks must not overlap; together they are the part's data, [dataStart, dataEnd).
  const order = Array.from({ length: plan.chunkStart.length }, (_, i) => i).sort((a, b) => plan.chunkStart[a]! - plan.chunkStart[b]!);
  let prevEnd = 4;
  plan.dataStart = order.length > 0 ? plan.chunkStart[order[0]!]! : 4;
  for (const i of order) {
    const s = plan.chunkStart[i]!;
    const e = s + plan.chunkSize[i]!;
    if (s < prevEnd) throw new Error(`${label}: column chunk byte range [${s}, ${e}) overlaps another chunk`);
    prevEnd = e;
  }
  plan.dataEnd = order.length > 0 ? prevEnd : 4;
  return plan;
}

function planSchema(r: Reader, plan: PartPlan): void {
  const [, n] = r.listHeader();
  for (let i = 0; i < n; i++) {
    const start = r.p;
    let name = "";
    let children = 0;
    let typed = false;
    readStruct(r, (fid) => {
      if (fid === SE_TYPE) {
        typed = true;
        r.zigzag();
      } else if (fid === SE_NAME) name = readString(r);
      else if (fid === SE_NUM_CHILDREN) children = r.zigzag();
    });
    if (i === 0) {
      if (children !== n - 1) throw new Error(`${plan.label}: only flat schemas are supported (root has ${children} children, ${n - 1} elements)`);
      plan.rootName = name;
      continue;
    }
    if (children > 0 || !typed) throw new Error(`${plan.label}: only flat schemas are supported (column "${name}" is a group)`);
    plan.schemaElements.push(r.b.slice(start, r.p));
    plan.names.push(name);
  }
  plan.columns = n - 1;
}

function planRowGroup(r: Reader, plan: PartPlan, g: number): void {
  let numRows = -1;
  let sawColumns = false;
  readStruct(r, (fid) => {
    if (fid === RG_NUM_ROWS) numRows = r.zigzag();
    else if (fid === RG_COLUMNS) {
      sawColumns = true;
      const [, n] = r.listHeader();
      if (n !== plan.columns) throw new Error(`${plan.label}: row group ${g} has ${n} column chunks, schema has ${plan.columns} columns`);
      plan.chunksAt[2 * g] = r.p;
      let uncompressed = 0;
      for (let c = 0; c < n; c++) {
        const { data, dict, size, uncompressed: usize } = readChunkPages(r, plan.label);
        if (data < 4 || size < 0) throw new Error(`${plan.label}: row group ${g} column ${c} lacks data_page_offset/total_compressed_size`);
        const i = g * plan.columns + c;
        plan.chunkStart[i] = dict > 0 ? Math.min(dict, data) : data;
        plan.chunkSize[i] = size;
        uncompressed += usize;
      }
      plan.chunksAt[2 * g + 1] = r.p;
      plan.uncompressed[g] = uncompressed;
    }
  });
  if (!sawColumns) throw new Error(`${plan.label}: row group ${g} has no column list`);
  if (numRows < 0) throw new Error(`${plan.label}: row group ${g} lacks num_rows`);
  plan.rowGroupRows.push(numRows);
}

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
  const tables = new Map<number, PlacedPart[]>();
  for (const p of parts) tables.set(p.table, [...(tables.get(p.table) ?? []), p]);
  const tableIds = [...tables.keys()].sort((a, b) => a - b);
  const owner = new Map<string, string>();
  /** holder[t][g]: the part of table t holding output row group g. */
  const holder: PlacedPart[][] = [];
  let columns = 0;
  for (const t of tableIds) {
    const own = tables.get(t)!.slice().sort((a, b) => a.firstRowGroup - b.firstRowGroup);
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
        if (rows !== rowGroupRows[g]) throw new Error(`${p.plan.label}: row group ${i} has ${rows} rows, the plan has ${rowGroupRows[g] ?? "no row group"} at ${g}`);
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
  const firstPlan = holder[0]![0]!.plan;
  const rows = rowGroupRows.reduce((a, b) => a + b, 0);

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
  last = writeI64Field(sink, FMD_NUM_ROWS, last, rows);
  last = sink.field(T_LIST, FMD_ROW_GROUPS, last);
  sink.listHeader(T_STRUCT, rowGroupRows.length);
  for (let g = 0; g < rowGroupRows.length; g++) {
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
    rgLast = writeI64Field(sink, RG_NUM_ROWS, rgLast, rowGroupRows[g]!);
    rgLast = writeI64Field(sink, RG_FILE_OFFSET, rgLast, fileOffset);
    rgLast = writeI64Field(sink, RG_TOTAL_COMPRESSED, rgLast, compressed);
    if (g <= 0x7fff) {
      rgLast = sink.field(T_I16, RG_ORDINAL, rgLast);
      sink.zigzag(g);
    }
    sink.u8(T_STOP);
  }
  const body = sink.take().slice();

  const partKv = new Map<string, string | undefined>();
  for (const groups of holder) for (const [k, v] of groups[0]!.plan.kv) if (k !== ARROW_SCHEMA_KEY && !partKv.has(k)) partKv.set(k, v);
  const withOrders = holder.every((groups) => groups[0]!.plan.columnOrders !== undefined);
  const tail = (extra: Record<string, string>): Uint8Array => {
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
      tLast = out.field(T_LIST, FMD_COLUMN_ORDERS, tLast);
      out.listHeader(T_STRUCT, columns);
      for (const groups of holder) for (const o of groups[0]!.plan.columnOrders ?? []) out.bytes(o, 0, o.length);
    }
    out.u8(T_STOP);
    return out.take().slice();
  };
  return { body, tail, rows, rowGroups: rowGroupRows.length, columns };
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
          if (v > 0 && mf !== CMD_INDEX_PAGE_OFFSET && (v < start || v >= end)) throw new Error(`${where}: page offset ${v} outside its column chunk [${start}, ${end})`);
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
