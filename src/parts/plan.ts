// How the training file is cut, decided once the target's rows are known: its row groups (from
// the footer and row-group limits below), and for each table the slices of whole row groups it is
// aligned in (from the memory budget). Pure functions; the extract stage and the workers call
// them with the same inputs and so agree.
import { JobError } from "../errors.ts";
import { formatBytes } from "../units.ts";

/** Bytes of a float64 value: every column of the training file is 8 bytes wide or less. */
export const BYTES_PER_VALUE = 8;
/**
 * parquet-java (Spark, Hive) refuses footers over 100 MB and pyarrow's default thrift limits are
 * 100 MB; the footer is kept under this, with room to spare.
 */
export const FOOTER_LIMIT_BYTES = 64 * 1024 ** 2;
/** Room in the footer for the schema (~40 bytes a column) and the key/value metadata (the manifest, ~100 KB). */
export const FOOTER_RESERVE_BYTES = 2 * 1024 ** 2;
/** A reader streams the file a row group at a time: one decoded row group stays under this. */
export const DECODED_ROW_GROUP_LIMIT_BYTES = 512 * 1024 ** 2;
/**
 * Footer bytes per column chunk besides the column's name, at most, as the merged footer writes
 * polars' chunks: file_offset 6, type 2, encodings 4, path list 3, codec 2, num_values 4, the two
 * sizes 5 each, data and dictionary page offsets 6 each (5-byte varints past 4 GiB), null count
 * 6, struct ends 3. Measured: ~41 on small files (2-byte offsets, no dictionary page).
 */
export const CHUNK_FOOTER_BYTES = 52;
/** What min/max statistics add to a chunk (the target part's key and targets carry them). */
export const MIN_MAX_FOOTER_BYTES = 24;

export interface RowGroupPlan {
  rows: number;
  rowsPerGroup: number;
  groups: number;
  /** Estimated footer bytes at this plan. */
  footerEstimateBytes: number;
  /** Uncompressed bytes of one full row group. */
  decodedGroupBytes: number;
  /**
   * "both": the footer and row-group limits hold; "footer": they cannot both, and the footer's
   * won; "ROW_GROUP_ROWS": the size was asked for (and the footer still fits).
   */
  limitedBy: "both" | "footer" | "ROW_GROUP_ROWS";
}

export interface RowGroupInputs {
  /** Columns of the training file. */
  columns: number;
  /** footerBytesPerRowGroup() of its columns. */
  footerBytesPerRowGroup: number;
  /** ROW_GROUP_ROWS, when set: rows per row group asked for. */
  rowsPerGroup?: number | undefined;
}

/** Footer bytes one row group of these columns costs: a chunk entry per column. */
export function footerBytesPerRowGroup(columnNames: readonly string[], minMaxColumns: number): number {
  let bytes = minMaxColumns * MIN_MAX_FOOTER_BYTES;
  for (const name of columnNames) bytes += CHUNK_FOOTER_BYTES + Buffer.byteLength(name, "utf8");
  return bytes;
}

/**
 * Row groups as large as the decoded limit allows, unless that would make too many for the footer
 * limit: then the footer wins (a reader that cannot parse the footer reads nothing; a larger row
 * group only costs a reader memory), with as few row groups as fit it. Groups are even in size.
 */
export function planRowGroups(rows: number, inputs: RowGroupInputs): RowGroupPlan {
  if (!Number.isSafeInteger(rows) || rows < 1) throw new RangeError(`planRowGroups: ${rows} rows`);
  const rowBytes = Math.max(1, inputs.columns) * BYTES_PER_VALUE;
  if (inputs.rowsPerGroup !== undefined) {
    const rowsPerGroup = Math.min(rows, inputs.rowsPerGroup);
    const groups = Math.ceil(rows / rowsPerGroup);
    const footerEstimateBytes = groups * inputs.footerBytesPerRowGroup + FOOTER_RESERVE_BYTES;
    if (footerEstimateBytes > FOOTER_LIMIT_BYTES) {
      const fitting = Math.max(1, Math.floor((FOOTER_LIMIT_BYTES - FOOTER_RESERVE_BYTES) / Math.max(1, inputs.footerBytesPerRowGroup)));
      throw new JobError(
        `ROW_GROUP_ROWS=${inputs.rowsPerGroup} cuts ${rows} rows into ${groups} row groups: the footer would be ~${formatBytes(footerEstimateBytes)}, above the ${formatBytes(FOOTER_LIMIT_BYTES)} that every parquet reader accepts`,
        {
          reason: "row-groups",
          fix: `set ROW_GROUP_ROWS to ${Math.ceil(rows / fitting)} or more, or leave it unset to let the job choose`,
        },
      );
    }
    return { rows, rowsPerGroup, groups, footerEstimateBytes, decodedGroupBytes: rowsPerGroup * rowBytes, limitedBy: "ROW_GROUP_ROWS" };
  }
  const byDecoded = Math.max(1, Math.floor(DECODED_ROW_GROUP_LIMIT_BYTES / rowBytes));
  const wanted = Math.ceil(rows / byDecoded);
  const fitting = Math.max(1, Math.floor((FOOTER_LIMIT_BYTES - FOOTER_RESERVE_BYTES) / Math.max(1, inputs.footerBytesPerRowGroup)));
  const groups = Math.min(wanted, fitting, rows);
  const rowsPerGroup = Math.ceil(rows / groups);
  const used = Math.ceil(rows / rowsPerGroup);
  return {
    rows,
    rowsPerGroup,
    groups: used,
    footerEstimateBytes: used * inputs.footerBytesPerRowGroup + FOOTER_RESERVE_BYTES,
    decodedGroupBytes: rowsPerGroup * rowBytes,
    limitedBy: wanted <= fitting ? "both" : "footer",
  };
}

/**
 * Resident bytes per byte of values while a slice is aligned: the rows as read (the copy out of
 * the warehouse and polars' frame), the joined frame, the writer's buffers. Measured on the full
 * EURUSD shape: ...; 5 leaves a margin.
 */
export const ALIGN_WORKING_SET_FACTOR = 5;

/** Working bytes of aligning `rows` target rows of a table `width` columns wide (key included). */
export function sliceWorkingBytes(rows: number, width: number): number {
  return rows * (width + 1) * BYTES_PER_VALUE * ALIGN_WORKING_SET_FACTOR;
}

export interface SliceRange {
  firstRowGroup: number;
  endRowGroup: number;
  firstRow: number;
  endRow: number;
}

/**
 * A table's slices: runs of whole row groups whose working set fits `shareBytes`, as even as
 * possible (one row group at least, whatever the share).
 */
export function planSlices(plan: Pick<RowGroupPlan, "rows" | "rowsPerGroup" | "groups">, width: number, shareBytes: number): SliceRange[] {
  const groupBytes = sliceWorkingBytes(plan.rowsPerGroup, width);
  const perSlice = Math.max(1, Math.min(plan.groups, Math.floor(shareBytes / groupBytes)));
  const count = Math.ceil(plan.groups / perSlice);
  const base = Math.floor(plan.groups / count);
  const extra = plan.groups % count;
  const out: SliceRange[] = [];
  let g = 0;
  for (let s = 0; s < count; s += 1) {
    const n = base + (s < extra ? 1 : 0);
    out.push({ firstRowGroup: g, endRowGroup: g + n, firstRow: g * plan.rowsPerGroup, endRow: Math.min(plan.rows, (g + n) * plan.rowsPerGroup) });
    g += n;
  }
  return out;
}
