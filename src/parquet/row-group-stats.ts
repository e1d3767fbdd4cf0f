/**
 * Per row group, per column chunk: the null count from the chunk's statistics, and for one named
 * column its min and max. Read from the footer's thrift like `summarizeFooter`, so nothing of the
 * file is decoded; what the run report draws its null heat map and target coverage from.
 */
import { walkSchema } from "./footer.ts";
import { Reader, readStruct } from "./thrift.ts";

export interface RowGroupStats {
  numRows: number;
  /** Null count per leaf column, in `leafPaths` order; NaN where the chunk has no null_count statistic. */
  nullCounts: Float64Array;
  /** The `rangeOf` column's min and max statistics (its raw plain-encoded bytes), when the chunk has them. */
  range?: { min: Uint8Array; max: Uint8Array };
}

export interface FooterRowGroupStats {
  /** Leaf column paths (joined with ".") in column-chunk order. */
  leafPaths: string[];
  rowGroups: RowGroupStats[];
}

// ColumnChunk.meta_data = 3; ColumnMetaData.statistics = 12; Statistics: max = 1, min = 2,
// null_count = 3, max_value = 5, min_value = 6 (the newer, correctly ordered pair wins).
const CHUNK_META = 3;
const META_STATISTICS = 12;

/** Null counts per row group and column chunk (memory: row groups x columns numbers). */
export function rowGroupStats(thrift: Uint8Array, opts: { rangeOf?: string } = {}): FooterRowGroupStats {
  const r = new Reader(thrift);
  let leafPaths: string[] = [];
  let rowGroupsAt = -1;
  readStruct(r, (fid, type) => {
    if (fid === 2) leafPaths = walkSchema(r).leafPaths;
    else if (fid === 4) {
      rowGroupsAt = r.p; // walked after the schema is known
      r.skip(type);
    }
  });
  const rangeColumn = opts.rangeOf === undefined ? -1 : leafPaths.indexOf(opts.rangeOf);
  const rowGroups: RowGroupStats[] = [];
  if (rowGroupsAt < 0) return { leafPaths, rowGroups };
  r.p = rowGroupsAt;
  const [, n] = r.listHeader();
  const bytes = (): Uint8Array => {
    const len = r.varint();
    const out = r.b.slice(r.p, r.p + len); // a copy: the footer (tens of MiB) is not kept alive by it
    r.p += len;
    return out;
  };
  for (let g = 0; g < n; g++) {
    const group: RowGroupStats = { numRows: 0, nullCounts: new Float64Array(leafPaths.length).fill(Number.NaN) };
    readStruct(r, (fid) => {
      if (fid === 3) group.numRows = r.zigzag();
      else if (fid === 1) {
        const [, cols] = r.listHeader();
        if (cols !== leafPaths.length) throw new Error(`parquet row group ${g} has ${cols} column chunks, schema has ${leafPaths.length} leaves`);
        for (let c = 0; c < cols; c++) {
          const found: Partial<Record<"min" | "max" | "minValue" | "maxValue", Uint8Array>> = {};
          readStruct(r, (cf) => {
            if (cf !== CHUNK_META) return;
            readStruct(r, (mf) => {
              if (mf !== META_STATISTICS) return;
              readStruct(r, (sf) => {
                if (sf === 3) group.nullCounts[c] = r.zigzag();
                else if (c === rangeColumn && sf === 1) found.max = bytes();
                else if (c === rangeColumn && sf === 2) found.min = bytes();
                else if (c === rangeColumn && sf === 5) found.maxValue = bytes();
                else if (c === rangeColumn && sf === 6) found.minValue = bytes();
              });
            });
          });
          const min = found.minValue ?? found.min;
          const max = found.maxValue ?? found.max;
          if (c === rangeColumn && min && max) group.range = { min, max };
        }
      }
    });
    rowGroups.push(group);
  }
  return { leafPaths, rowGroups };
}
