// parquet.thrift field ids used when footers are read and rewritten at the byte level
// (merged-footer.ts), where a column chunk's pages lie, and the field-level helpers used to
// transcode a footer.
import { type Reader, type Sink, T_I64, readStruct } from "./thrift.ts";

export const FMD_VERSION = 1;
export const FMD_SCHEMA = 2;
export const FMD_NUM_ROWS = 3;
export const FMD_ROW_GROUPS = 4;
export const FMD_KV = 5;
export const FMD_CREATED_BY = 6;
export const FMD_COLUMN_ORDERS = 7;
export const FMD_ENCRYPTION_ALGORITHM = 8;
export const FMD_FOOTER_SIGNING_KEY = 9;
export const SE_TYPE = 1;
export const SE_NAME = 4;
export const SE_NUM_CHILDREN = 5;
export const RG_COLUMNS = 1;
export const RG_TOTAL_BYTE_SIZE = 2;
export const RG_NUM_ROWS = 3;
export const RG_FILE_OFFSET = 5;
export const RG_TOTAL_COMPRESSED = 6;
export const RG_ORDINAL = 7;
export const CC_FILE_PATH = 1;
export const CC_FILE_OFFSET = 2;
export const CC_META = 3;
export const CC_OFFSET_INDEX_OFFSET = 4;
export const CC_COLUMN_INDEX_LENGTH = 7;
export const CC_CRYPTO = 8;
export const CC_ENCRYPTED_META = 9;
export const CMD_TOTAL_UNCOMPRESSED = 6;
export const CMD_TOTAL_COMPRESSED = 7;
export const CMD_DATA_PAGE_OFFSET = 9;
export const CMD_INDEX_PAGE_OFFSET = 10;
export const CMD_DICT_PAGE_OFFSET = 11;
export const CMD_ENCODING_STATS = 13;
export const CMD_BLOOM_OFFSET = 14;
export const CMD_BLOOM_LENGTH = 15;
export const CMD_SIZE_STATISTICS = 16;

export interface ChunkPages {
  /** First page: the dictionary page when there is one, else the first data page; -1 if absent. */
  data: number;
  dict: number;
  /** total_compressed_size, -1 if absent. */
  size: number;
  uncompressed: number;
}

/** Reads one ColumnChunk struct at `r`; column chunks in other files or encrypted are refused. */
export function readChunkPages(r: Reader, path: string): ChunkPages {
  const pages: ChunkPages = { data: -1, dict: 0, size: -1, uncompressed: 0 };
  readStruct(r, (cf) => {
    if (cf === CC_FILE_PATH) {
      const len = r.varint();
      r.p += len;
      if (len > 0) throw new Error(`${path}: column chunks in external files (file_path) are not supported`);
    } else if (cf === CC_CRYPTO || cf === CC_ENCRYPTED_META) {
      throw new Error(`${path}: encrypted columns are not supported`);
    } else if (cf === CC_META) {
      readStruct(r, (mf) => {
        if (mf === CMD_DATA_PAGE_OFFSET) pages.data = r.zigzag();
        else if (mf === CMD_DICT_PAGE_OFFSET) pages.dict = r.zigzag();
        else if (mf === CMD_TOTAL_COMPRESSED) pages.size = r.zigzag();
        else if (mf === CMD_TOTAL_UNCOMPRESSED) pages.uncompressed = r.zigzag();
      });
    }
  });
  return pages;
}

/** Copies one field (header + raw value) from `r` to `out`. */
export function copyField(r: Reader, out: Sink, type: number, fid: number, lastFid: number): number {
  const start = r.p;
  r.skip(type);
  const next = out.field(type, fid, lastFid);
  out.bytes(r.b, start, r.p);
  return next;
}

export function writeI64Field(out: Sink, fid: number, lastFid: number, value: number): number {
  const next = out.field(T_I64, fid, lastFid);
  out.zigzag(value);
  return next;
}

/** An offset moved by `delta`; 0 and negative values mean "absent" and stay as they are. */
export function rebase(value: number, delta: number): number {
  return value > 0 ? value + delta : value;
}
