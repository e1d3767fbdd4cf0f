// One part file's footer, read once for the assembly: its schema elements (to copy), row groups,
// and where every column chunk lies in the part file. The merged footer (merged-footer.ts) is
// built from these plans.
import { Reader, T_STRUCT, readStruct } from "./thrift.ts";
import {
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
  RG_NUM_ROWS,
  SE_NAME,
  SE_NUM_CHILDREN,
  SE_TYPE,
  readChunkPages,
} from "./fields.ts";

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
  const { rowGroupsAt, columnOrdersAt } = readTopLevel(r, plan);
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
  placeData(plan);
  return plan;
}

/** The FileMetaData's own fields; row groups and column orders are walked after the schema is known. */
function readTopLevel(r: Reader, plan: PartPlan): { rowGroupsAt: number; columnOrdersAt: number } {
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
      plan.createdBy = plan.thrift.slice(start, r.p);
    } else if (fid === FMD_ENCRYPTION_ALGORITHM || fid === FMD_FOOTER_SIGNING_KEY) {
      throw new Error(`${plan.label}: encrypted parquet files are not supported`);
    }
  });
  if (!sawSchema) throw new Error(`${plan.label}: footer has no schema`);
  return { rowGroupsAt, columnOrdersAt };
}

/** The chunks must not overlap; together they are the part's data, [dataStart, dataEnd). */
function placeData(plan: PartPlan): void {
  const order = Array.from({ length: plan.chunkStart.length }, (_, i) => i).sort((a, b) => plan.chunkStart[a]! - plan.chunkStart[b]!);
  let prevEnd = 4;
  plan.dataStart = order.length > 0 ? plan.chunkStart[order[0]!]! : 4;
  for (const i of order) {
    const s = plan.chunkStart[i]!;
    const e = s + plan.chunkSize[i]!;
    if (s < prevEnd) throw new Error(`${plan.label}: column chunk byte range [${s}, ${e}) overlaps another chunk`);
    prevEnd = e;
  }
  plan.dataEnd = order.length > 0 ? prevEnd : 4;
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
