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

/**
 * Resident bytes per byte of the target rows one worker aligns at a time: the checkpoint rows as
 * read, the joined frame, the writer's buffers. Measured at full EURUSD shape: two 233-column
 * tables of 175,970 rows in flight (656 MB of values) at 2.2 GiB peak RSS, about 3.3.
 */
export const ALIGN_WORKING_SET_FACTOR = 4;
/**
 * What a second aligning thread costs besides its data: its V8 isolate, polars' per-call state and
 * the memory glibc keeps in the thread's arena. Measured: a second worker added ~230 MiB on
 * 40,000-row x 75-column tables whose values are 24 MB.
 */
export const ALIGN_WORKER_OVERHEAD_BYTES = 128 * 1024 ** 2;

export interface AlignmentPlan {
  /** Threads aligning tables at once. */
  workers: number;
  /** Per table: target rows joined at a time (all rows when the table fits its share). */
  sliceRows: number[];
}

/**
 * How the merge aligns tables within the budget: as many workers as asked for while each keeps at
 * least ALIGN_WORKER_OVERHEAD_BYTES of data besides its overhead, then each table in slices of
 * whole row groups small enough for one worker's share. Memory is then set by the budget, not by
 * the number of rows.
 */
export function planAlignment(rows: number, widths: number[], budgetBytes: number, requestedWorkers: number, rowGroupRows: number): AlignmentPlan {
  const workers = Math.max(1, Math.min(requestedWorkers, widths.length, Math.floor(budgetBytes / (2 * ALIGN_WORKER_OVERHEAD_BYTES))));
  const share = Math.max(budgetBytes / workers - ALIGN_WORKER_OVERHEAD_BYTES, budgetBytes / (2 * workers));
  const group = Math.max(1, rowGroupRows);
  const sliceRows = widths.map((w) => {
    const fit = Math.floor(share / (Math.max(1, w) * BYTES_PER_VALUE * ALIGN_WORKING_SET_FACTOR));
    if (fit >= rows) return rows;
    return Math.max(group, Math.floor(fit / group) * group);
  });
  return { workers, sliceRows };
}
