// How many target rows the merge handles at a time, from the memory budget. Pure.

/** Float64 values plus validity; every column of the training file is 8 bytes wide or less. */
export const BYTES_PER_VALUE = 8;
/**
 * Resident bytes per byte of a row range at the peak: the joined pieces and the assembled range,
 * the parquet writer's encoded buffers, the decoded row groups of the table being read, and
 * what polars' allocator keeps for reuse. Measured at about 4.3 (40 checkpoints x 75 columns,
 * 1,833-row ranges: 195 MiB resident above the baseline for a 45 MiB range); 5 leaves a margin.
 */
export const WORKING_SET_FACTOR = 5;
export const MIN_RANGE_ROWS = 64;
/**
 * Each range becomes one row group of the output. A reader streams the file a row group at a
 * time, so a row group is kept under this many uncompressed bytes even when the budget would
 * allow more (17,038 float64 columns: 3,938 rows).
 */
export const MAX_ROW_GROUP_BYTES = 512 * 1024 ** 2;

export interface RowRange {
  index: number;
  /** First row (inclusive) and end row (exclusive) in target order. */
  start: number;
  end: number;
}

export interface MergePlan {
  rowsPerRange: number;
  ranges: RowRange[];
  /** Estimated peak bytes held by the merge's data at once. */
  estimatedPeakBytes: number;
}

export function planRowRanges(rows: number, columns: number, budgetBytes: number): MergePlan {
  if (rows <= 0) return { rowsPerRange: 0, ranges: [], estimatedPeakBytes: 0 };
  const bytesPerRow = Math.max(1, columns) * BYTES_PER_VALUE * WORKING_SET_FACTOR;
  const fit = Math.floor(budgetBytes / bytesPerRow);
  const readable = Math.floor(MAX_ROW_GROUP_BYTES / (Math.max(1, columns) * BYTES_PER_VALUE));
  const rowsPerRange = Math.min(rows, Math.max(MIN_RANGE_ROWS, Math.min(fit, readable)));
  const ranges: RowRange[] = [];
  for (let start = 0, index = 0; start < rows; start += rowsPerRange, index += 1) {
    ranges.push({ index, start, end: Math.min(rows, start + rowsPerRange) });
  }
  return { rowsPerRange, ranges, estimatedPeakBytes: rowsPerRange * bytesPerRow };
}
