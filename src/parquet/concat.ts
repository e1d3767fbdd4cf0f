/**
 * Concatenate parquet files that share one schema into one parquet file without decoding:
 * every part's row groups are copied byte for byte and a merged footer is written.
 *
 * The footer is transcoded at the thrift compact protocol level rather than decoded into
 * objects and re-encoded: every field is copied verbatim (statistics, encodings, size
 * statistics, column orders, fields this code does not know) except
 * - offsets, which are rebased: ColumnChunk.file_offset, ColumnMetaData.data_page_offset,
 *   index_page_offset, dictionary_page_offset, RowGroup.file_offset;
 * - page indexes (ColumnChunk.offset_index_* / column_index_*) and bloom filters
 *   (ColumnMetaData.bloom_filter_*), which are dropped: they live outside the row-group byte
 *   ranges that are copied;
 * - RowGroup.ordinal, renumbered in the output (dropped past the i16 range);
 * - FileMetaData.num_rows (summed), row_groups (concatenated), key_value_metadata (merged).
 * So nothing is lost in a decode/encode round trip (exact min/max bytes, i16 vs i32 field
 * types, ...) and encoding cost is a byte copy per field.
 *
 * Memory: pass 1 reads each part's footer to validate the schema and plan the byte ranges
 * (only a few numbers per row group are kept); the data is then copied through one fixed
 * buffer; pass 2 re-reads each part's footer and streams its transcoded row groups to the
 * output. Peak memory is about one part footer plus the copy buffer.
 */
import { open, rename, rm } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { resolve } from "node:path";
import {
  ConvertedTypes,
  FieldRepetitionTypes,
  ParquetTypes,
} from "hyparquet/src/constants.js";
import {
  Reader,
  Sink,
  T_BINARY,
  T_FALSE,
  T_I16,
  T_I32,
  T_I64,
  T_LIST,
  T_SET,
  T_STOP,
  T_STRUCT,
  T_TRUE,
  T_BYTE,
  readRawFooter,
  readStruct,
} from "./footer.ts";
import {
  CC_COLUMN_INDEX_LENGTH,
  CC_FILE_OFFSET,
  CC_META,
  CC_OFFSET_INDEX_OFFSET,
  CMD_BLOOM_LENGTH,
  CMD_BLOOM_OFFSET,
  CMD_DATA_PAGE_OFFSET,
  CMD_DICT_PAGE_OFFSET,
  CMD_INDEX_PAGE_OFFSET,
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
  copyField,
  readChunkPages,
  rebase,
  writeI64Field,
} from "./fields.ts";

export interface ConcatOptions {
  /** Footer key/value metadata; wins over the parts' metadata for the same key. */
  keyValueMetadata?: Record<string, string>;
  /** Called as data is copied: bytes of row-group data copied so far, total to copy. */
  onProgress?: (done: number, total: number) => void;
}

export interface ConcatResult {
  rows: number;
  rowGroups: number;
  /** Size of the output file in bytes. */
  bytes: number;
}

const COPY_BUFFER_BYTES = 4 << 20;
const FLUSH_BYTES = 4 << 20;
const MAGIC = Buffer.from("PAR1", "latin1");

// ---------------------------------------------------------------------------------------------
// Pass 1: plan
// ---------------------------------------------------------------------------------------------

interface RowGroupRange {
  start: number;
  end: number;
  numRows: number;
}

interface PartPlan {
  path: string;
  numRows: number;
  columns: number;
  rowGroups: RowGroupRange[];
}

interface RawField {
  fid: number;
  type: number;
  bytes: Uint8Array;
}

interface FooterShape {
  /** Top-level FileMetaData fields other than row_groups, as raw value bytes. */
  fields: RawField[];
  schema: Uint8Array;
  kv: [string, string | undefined][];
}

const utf8 = new TextDecoder();

function planPart(thrift: Uint8Array, path: string, footerStart: number): PartPlan & FooterShape {
  const r = new Reader(thrift);
  const plan: PartPlan & FooterShape = {
    path,
    numRows: 0,
    columns: -1,
    rowGroups: [],
    fields: [],
    schema: new Uint8Array(0),
    kv: [],
  };
  readStruct(r, (fid, type) => {
    const start = r.p;
    if (fid === FMD_ROW_GROUPS) {
      const [, n] = r.listHeader();
      for (let g = 0; g < n; g++) plan.rowGroups.push(planRowGroup(r, plan, g));
      return;
    }
    if (fid === FMD_ENCRYPTION_ALGORITHM || fid === FMD_FOOTER_SIGNING_KEY) {
      throw new Error(`${path}: encrypted parquet files are not supported`);
    }
    if (fid === FMD_NUM_ROWS) {
      plan.numRows = r.zigzag();
    } else if (fid === FMD_KV) {
      const [, n] = r.listHeader();
      for (let i = 0; i < n; i++) {
        let key = "";
        let value: string | undefined;
        readStruct(r, (f) => {
          if (f === 1 || f === 2) {
            const len = r.varint();
            const s = utf8.decode(r.b.subarray(r.p, r.p + len));
            r.p += len;
            if (f === 1) key = s;
            else value = s;
          }
        });
        plan.kv.push([key, value]);
      }
    } else {
      r.skip(type);
    }
    const bytes = thrift.slice(start, r.p);
    if (fid === FMD_SCHEMA) plan.schema = bytes;
    if (fid !== FMD_NUM_ROWS && fid !== FMD_KV) plan.fields.push({ fid, type, bytes });
  });

  // Row groups must lie inside the data area and not overlap each other.
  const sorted = [...plan.rowGroups].sort((a, b) => a.start - b.start);
  let prevEnd = 4;
  for (const rg of sorted) {
    if (rg.start < prevEnd || rg.end > footerStart) {
      throw new Error(`${path}: row group byte range [${rg.start}, ${rg.end}) overlaps another row group or the footer`);
    }
    prevEnd = rg.end;
  }
  const sum = plan.rowGroups.reduce((s, rg) => s + rg.numRows, 0);
  if (sum !== plan.numRows) throw new Error(`${path}: num_rows ${plan.numRows} != sum of row groups ${sum}`);
  return plan;
}

function planRowGroup(r: Reader, plan: PartPlan, g: number): RowGroupRange {
  let start = Infinity;
  let end = -Infinity;
  let numRows = 0;
  let columns = 0;
  readStruct(r, (fid) => {
    if (fid === RG_NUM_ROWS) numRows = r.zigzag();
    else if (fid === RG_COLUMNS) {
      const [, n] = r.listHeader();
      columns = n;
      for (let c = 0; c < n; c++) {
        const { data, dict, size } = readChunkPages(r, plan.path);
        if (data < 4 || size < 0) {
          throw new Error(`${plan.path}: row group ${g} column ${c} lacks data_page_offset/total_compressed_size`);
        }
        const chunkStart = dict > 0 ? Math.min(dict, data) : data;
        start = Math.min(start, chunkStart);
        end = Math.max(end, chunkStart + size);
      }
    }
  });
  if (plan.columns === -1) plan.columns = columns;
  else if (plan.columns !== columns) {
    throw new Error(`${plan.path}: row group ${g} has ${columns} columns, row group 0 has ${plan.columns}`);
  }
  if (columns === 0) {
    // No column chunks: nothing to copy (cannot happen for a non-empty schema).
    start = 4;
    end = 4;
  }
  return { start, end, numRows };
}

// ---------------------------------------------------------------------------------------------
// Schema comparison (only decoded when the raw bytes differ, for the error message)
// ---------------------------------------------------------------------------------------------

type Generic = number | string | boolean | Uint8Array | Generic[] | { [fid: number]: Generic };

function readGeneric(r: Reader, type: number, inList = false): Generic {
  switch (type) {
    case T_TRUE:
      return inList ? r.u8() === 1 : true;
    case T_FALSE:
      return inList ? r.u8() === 1 : false;
    case T_BYTE:
      return r.u8();
    case T_I16:
    case T_I32:
    case T_I64:
      return r.zigzag();
    case T_BINARY: {
      const n = r.varint();
      const b = r.b.subarray(r.p, r.p + n);
      r.p += n;
      return utf8.decode(b);
    }
    case T_LIST:
    case T_SET: {
      const [et, n] = r.listHeader();
      const out: Generic[] = [];
      for (let i = 0; i < n; i++) out.push(readGeneric(r, et, true));
      return out;
    }
    case T_STRUCT: {
      const out: { [fid: number]: Generic } = {};
      readStruct(r, (fid, t) => {
        out[fid] = readGeneric(r, t);
      });
      return out;
    }
    default: {
      const start = r.p;
      r.skip(type, inList);
      return r.b.slice(start, r.p);
    }
  }
}

const LOGICAL_NAMES: Record<number, string> = {
  1: "STRING", 2: "MAP", 3: "LIST", 4: "ENUM", 5: "DECIMAL", 6: "DATE", 7: "TIME", 8: "TIMESTAMP",
  10: "INTEGER", 11: "NULL", 12: "JSON", 13: "BSON", 14: "UUID", 15: "FLOAT16", 16: "VARIANT",
  17: "GEOMETRY", 18: "GEOGRAPHY",
};
const UNIT_NAMES: Record<number, string> = { 1: "MILLIS", 2: "MICROS", 3: "NANOS" };

function describeLogical(v: Generic | undefined): string | undefined {
  if (v === undefined || typeof v !== "object" || Array.isArray(v) || v instanceof Uint8Array) return undefined;
  const [id, body] = Object.entries(v)[0] ?? [];
  if (id === undefined) return undefined;
  const name = LOGICAL_NAMES[Number(id)] ?? `logical#${id}`;
  if ((name === "TIMESTAMP" || name === "TIME") && body && typeof body === "object" && !Array.isArray(body)) {
    const b = body as { [fid: number]: Generic };
    const unit = b[2] && typeof b[2] === "object" ? UNIT_NAMES[Number(Object.keys(b[2])[0])] : undefined;
    return `${name}(${unit ?? "?"}, isAdjustedToUTC=${String(b[1])})`;
  }
  if (name === "INTEGER" && body && typeof body === "object" && !Array.isArray(body)) {
    const b = body as { [fid: number]: Generic };
    return `INTEGER(${String(b[1])}, signed=${String(b[2])})`;
  }
  if (name === "DECIMAL" && body && typeof body === "object" && !Array.isArray(body)) {
    const b = body as { [fid: number]: Generic };
    return `DECIMAL(${String(b[2])}, ${String(b[1])})`;
  }
  return name;
}

interface SchemaElementDesc {
  name: string;
  props: Record<string, string | undefined>;
}

function describeSchema(raw: Uint8Array): SchemaElementDesc[] {
  const list = readGeneric(new Reader(raw), T_LIST);
  if (!Array.isArray(list)) return [];
  return list.map((g) => {
    const e = g as { [fid: number]: Generic };
    const str = (v: Generic | undefined): string | undefined => (v === undefined ? undefined : String(v));
    return {
      name: String(e[4]),
      props: {
        name: str(e[4]),
        "physical type": e[1] === undefined ? undefined : (ParquetTypes[Number(e[1])] ?? str(e[1])),
        type_length: str(e[2]),
        repetition: e[3] === undefined ? undefined : (FieldRepetitionTypes[Number(e[3])] ?? str(e[3])),
        num_children: str(e[5]),
        converted_type: e[6] === undefined ? undefined : (ConvertedTypes[Number(e[6])] ?? str(e[6])),
        scale: str(e[7]),
        precision: str(e[8]),
        field_id: str(e[9]),
        "logical type": describeLogical(e[10]),
        other: JSON.stringify(
          Object.fromEntries(Object.entries(e).filter(([k]) => Number(k) > 10)),
          (_k, v: unknown) => (v instanceof Uint8Array ? Buffer.from(v).toString("hex") : v),
        ),
      },
    };
  });
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);
}

function schemaMismatch(part: number, path: string, refPath: string, ref: Uint8Array, other: Uint8Array): Error {
  const a = describeSchema(ref);
  const b = describeSchema(other);
  const prefix = `schema mismatch: part ${part} (${path}) differs from part 0 (${refPath})`;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (!x || !y) {
      const extra = (x ?? y)?.name ?? "?";
      return new Error(
        `${prefix}: it has ${b.length - 1} schema columns vs ${a.length - 1}; first unmatched column "${extra}" (schema element ${i})`,
      );
    }
    for (const key of Object.keys(x.props)) {
      if (x.props[key] !== y.props[key]) {
        const what = i === 0 ? "schema root" : `column "${y.name}" (schema element ${i}${x.name !== y.name ? `, part 0 has "${x.name}"` : ""})`;
        return new Error(`${prefix} at ${what}: ${key} ${y.props[key] ?? "(none)"} vs ${x.props[key] ?? "(none)"} in part 0`);
      }
    }
  }
  return new Error(`${prefix}: schema encodings differ`);
}

// ---------------------------------------------------------------------------------------------
// Pass 2: transcode row groups with rebased offsets
// ---------------------------------------------------------------------------------------------

function transcodeColumnMeta(r: Reader, out: Sink, delta: number, range: RowGroupRange, path: string): void {
  let last = 0;
  readStruct(r, (fid, type) => {
    if (fid === CMD_DATA_PAGE_OFFSET || fid === CMD_DICT_PAGE_OFFSET || fid === CMD_INDEX_PAGE_OFFSET) {
      const v = r.zigzag();
      if (v > 0 && fid !== CMD_INDEX_PAGE_OFFSET && (v < range.start || v >= range.end)) {
        throw new Error(`${path}: page offset ${v} outside its row group [${range.start}, ${range.end})`);
      }
      last = writeI64Field(out, fid, last, rebase(v, delta));
    } else if (fid === CMD_BLOOM_OFFSET || fid === CMD_BLOOM_LENGTH) {
      r.skip(type); // bloom filters are not copied
    } else {
      last = copyField(r, out, type, fid, last);
    }
  });
  out.u8(T_STOP);
}

function transcodeColumnChunk(r: Reader, out: Sink, delta: number, range: RowGroupRange, path: string): void {
  let last = 0;
  readStruct(r, (fid, type) => {
    if (fid === CC_FILE_OFFSET) {
      last = writeI64Field(out, fid, last, rebase(r.zigzag(), delta));
    } else if (fid === CC_META) {
      last = out.field(T_STRUCT, fid, last);
      transcodeColumnMeta(r, out, delta, range, path);
    } else if (fid >= CC_OFFSET_INDEX_OFFSET && fid <= CC_COLUMN_INDEX_LENGTH) {
      r.skip(type); // page indexes are not copied
    } else {
      last = copyField(r, out, type, fid, last);
    }
  });
  out.u8(T_STOP);
}

function transcodeRowGroup(r: Reader, out: Sink, delta: number, range: RowGroupRange, ordinal: number, path: string): void {
  let last = 0;
  readStruct(r, (fid, type) => {
    if (fid === RG_COLUMNS) {
      const [et, n] = r.listHeader();
      last = out.field(T_LIST, fid, last);
      out.listHeader(et, n);
      for (let c = 0; c < n; c++) transcodeColumnChunk(r, out, delta, range, path);
    } else if (fid === RG_FILE_OFFSET) {
      last = writeI64Field(out, fid, last, rebase(r.zigzag(), delta));
    } else if (fid === RG_ORDINAL) {
      r.skip(type);
      if (ordinal <= 0x7fff) {
        last = out.field(T_I16, fid, last);
        out.zigzag(ordinal);
      }
    } else {
      last = copyField(r, out, type, fid, last);
    }
  });
  out.u8(T_STOP);
}

function transcodeRowGroups(thrift: Uint8Array, out: Sink, deltas: number[], ranges: RowGroupRange[], ordinal0: number, path: string): void {
  const r = new Reader(thrift);
  readStruct(r, (fid) => {
    if (fid !== FMD_ROW_GROUPS) return;
    const [, n] = r.listHeader();
    if (n !== deltas.length) throw new Error(`${path}: footer changed during concatenation`);
    for (let g = 0; g < n; g++) {
      transcodeRowGroup(r, out, deltas[g] ?? 0, ranges[g] ?? { start: 0, end: 0, numRows: 0 }, ordinal0 + g, path);
    }
  });
}

// ---------------------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------------------

async function writeAll(fh: FileHandle, data: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < data.length) {
    const { bytesWritten } = await fh.write(data, done, data.length - done, position + done);
    done += bytesWritten;
  }
}

async function copyRange(src: FileHandle, dst: FileHandle, buf: Buffer, from: number, to: number, at: number, path: string): Promise<void> {
  let pos = from;
  while (pos < to) {
    const want = Math.min(buf.length, to - pos);
    const { bytesRead } = await src.read(buf, 0, want, pos);
    if (bytesRead === 0) throw new Error(`${path}: unexpected end of file at ${pos}`);
    await writeAll(dst, buf.subarray(0, bytesRead), at + (pos - from));
    pos += bytesRead;
  }
}

/**
 * Concatenate `parts` (same schema, in order) into `outPath`, copying encoded row groups byte
 * for byte. Writes `outPath + ".tmp"` and renames it on success; removes it on failure.
 * Statistics (null counts, min/max) are kept; page indexes and bloom filters are dropped.
 * Key/value metadata: union of the parts' (first part wins on conflicts), then `opts`.
 */
export async function concatParquetFiles(parts: string[], outPath: string, opts: ConcatOptions = {}): Promise<ConcatResult> {
  if (parts.length === 0) throw new Error("concatParquetFiles: no parts given");
  const outAbs = resolve(outPath);
  const tmpPath = `${outPath}.tmp`;
  for (const p of parts) {
    const abs = resolve(p);
    if (abs === outAbs || abs === resolve(tmpPath)) throw new Error(`concatParquetFiles: part ${p} is the output file`);
  }

  // Pass 1: validate schemas and plan byte ranges.
  const plans: PartPlan[] = [];
  let shape: FooterShape | undefined;
  const kv = new Map<string, string | undefined>();
  for (let i = 0; i < parts.length; i++) {
    const path = parts[i] as string;
    const raw = await readRawFooter(path);
    const plan = planPart(raw.thrift, path, raw.footerStart);
    if (!shape) {
      shape = { fields: plan.fields, schema: plan.schema, kv: plan.kv };
    } else {
      if (!sameBytes(shape.schema, plan.schema)) throw schemaMismatch(i, path, parts[0] as string, shape.schema, plan.schema);
      const ref = plans[0];
      if (ref && ref.columns !== -1 && plan.columns !== -1 && ref.columns !== plan.columns) {
        throw new Error(`part ${i} (${path}) has ${plan.columns} column chunks per row group, part 0 has ${ref.columns}`);
      }
    }
    for (const [k, v] of plan.kv) if (!kv.has(k)) kv.set(k, v);
    plans.push({ path, numRows: plan.numRows, columns: plan.columns, rowGroups: plan.rowGroups });
  }
  if (!shape) throw new Error("concatParquetFiles: no parts given");
  for (const [k, v] of Object.entries(opts.keyValueMetadata ?? {})) kv.set(k, v);

  const totalRows = plans.reduce((s, p) => s + p.numRows, 0);
  const totalRowGroups = plans.reduce((s, p) => s + p.rowGroups.length, 0);
  const totalBytes = plans.reduce((s, p) => s + p.rowGroups.reduce((t, rg) => t + (rg.end - rg.start), 0), 0);

  const out = await open(tmpPath, "w");
  let closed = false;
  try {
    // Data: PAR1, then every row group's bytes.
    await writeAll(out, MAGIC, 0);
    let pos = MAGIC.length;
    let copied = 0;
    const deltas: number[][] = [];
    const buf = Buffer.allocUnsafe(COPY_BUFFER_BYTES);
    opts.onProgress?.(0, totalBytes);
    for (const plan of plans) {
      const src = await open(plan.path, "r");
      try {
        const d: number[] = [];
        for (const rg of plan.rowGroups) {
          d.push(pos - rg.start);
          await copyRange(src, out, buf, rg.start, rg.end, pos, plan.path);
          pos += rg.end - rg.start;
          copied += rg.end - rg.start;
          opts.onProgress?.(copied, totalBytes);
        }
        deltas.push(d);
      } finally {
        await src.close();
      }
    }

    // Footer: FileMetaData fields in field-id order, row groups streamed part by part.
    const footerStart = pos;
    const sink = new Sink();
    const flush = async (): Promise<void> => {
      const bytes = sink.take();
      await writeAll(out, bytes, pos);
      pos += bytes.length;
    };
    const fids = new Set(shape.fields.map((f) => f.fid));
    fids.add(FMD_VERSION);
    fids.add(FMD_NUM_ROWS);
    fids.add(FMD_ROW_GROUPS);
    if (kv.size > 0) fids.add(FMD_KV);
    let last = 0;
    for (const fid of [...fids].sort((a, b) => a - b)) {
      if (fid === FMD_NUM_ROWS) {
        last = writeI64Field(sink, fid, last, totalRows);
      } else if (fid === FMD_ROW_GROUPS) {
        last = sink.field(T_LIST, fid, last);
        sink.listHeader(T_STRUCT, totalRowGroups);
        let ordinal = 0;
        for (let i = 0; i < plans.length; i++) {
          const plan = plans[i] as PartPlan;
          if (plan.rowGroups.length === 0) continue;
          const raw = await readRawFooter(plan.path);
          transcodeRowGroups(raw.thrift, sink, deltas[i] ?? [], plan.rowGroups, ordinal, plan.path);
          ordinal += plan.rowGroups.length;
          if (sink.len >= FLUSH_BYTES) await flush();
        }
      } else if (fid === FMD_KV) {
        last = sink.field(T_LIST, fid, last);
        sink.listHeader(T_STRUCT, kv.size);
        for (const [k, v] of kv) {
          sink.u8((1 << 4) | T_BINARY);
          sink.string(k);
          if (v !== undefined) {
            sink.u8((1 << 4) | T_BINARY);
            sink.string(v);
          }
          sink.u8(T_STOP);
        }
      } else if (fid === FMD_VERSION && !shape.fields.some((f) => f.fid === FMD_VERSION)) {
        last = sink.field(T_I32, fid, last);
        sink.zigzag(1);
      } else {
        const f = shape.fields.find((x) => x.fid === fid);
        if (!f) continue;
        last = sink.field(f.type, fid, last);
        sink.bytes(f.bytes, 0, f.bytes.length);
      }
    }
    sink.u8(T_STOP);
    await flush();
    const footerLength = pos - footerStart;
    if (footerLength > 0xffffffff) throw new Error(`footer of ${footerLength} bytes exceeds the 4 GiB parquet limit`);
    const trailer = Buffer.alloc(8);
    trailer.writeUInt32LE(footerLength, 0);
    MAGIC.copy(trailer, 4);
    await writeAll(out, trailer, pos);
    pos += 8;

    await out.datasync();
    await out.close();
    closed = true;
    await rename(tmpPath, outPath);
    return { rows: totalRows, rowGroups: totalRowGroups, bytes: pos };
  } catch (err) {
    if (!closed) await out.close().catch(() => {});
    await rm(tmpPath, { force: true }).catch(() => {});
    throw err;
  }
}
