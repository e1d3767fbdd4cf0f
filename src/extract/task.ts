// What the extraction pool's workers receive and return. A task is small and serialisable; table
// data never crosses threads: a worker reads its rows, aligns them to the target's rows and writes
// the part file itself, and hands back a summary (the target's keys being the one exception:
// 1.4 MB that every later task needs, shared read-only).
import type { RowGroupInputs } from "../parts/plan.ts";
import type { GcpTaskSettings, ReadFigures, SliceBounds, TableQuery } from "../warehouse/port.ts";

/** Where a worker reads rows from. */
export type SourceSettings = { backend: "local"; warehouse: string; duckdb: DuckDBSettings } | { backend: "gcp"; gcp: GcpTaskSettings };

/** Each worker opens its own read-only DuckDB instance with these (from the memory plan). */
export interface DuckDBSettings {
  memoryLimitBytes: number;
  threads: number;
}

/** Writer settings shared by every part, so parts of one file agree byte for byte. */
export interface PartWriting {
  rowsPerGroup: number;
  /** Min/max statistics too (the target part: the key and targets); features carry null counts only. */
  minMax: boolean;
}

/**
 * The target table: its rows define the training file's rows. The worker reads them, checks the
 * key, decides the row-group plan from the row count (planRowGroups with these inputs) and writes
 * the target part (key and targets).
 */
export interface TargetTask {
  kind: "target";
  source: SourceSettings;
  query: TableQuery;
  /** planRowGroups' inputs besides the row count, computed once from discovery. */
  rowGroupInputs: RowGroupInputs;
  /** Directory for the part file. */
  outDir: string;
  fault?: FaultDraw | undefined;
}

/**
 * One part: the rows of one feature table whose keys fall in the slice's key range, left-joined
 * onto the target keys of rows [firstRow, endRow), written without the key.
 */
export interface PartTask {
  kind: "part";
  source: SourceSettings;
  query: TableQuery;
  /** The target's keys (µs since the epoch, strictly increasing), on a SharedArrayBuffer. */
  keys: BigInt64Array;
  slice: SliceBounds;
  writing: PartWriting;
  fingerprint: string;
  outPath: string;
  fault?: FaultDraw | undefined;
}

/** FAULT_RATE's draw for one attempt (testing only). */
export interface FaultDraw {
  rate: number;
  seed: number;
  attempt: number;
}

/** A part file as written: where its column chunks and its footer lie, with their CRC32Cs. */
export interface WrittenPart {
  path: string;
  fileBytes: number;
  dataStart: number;
  dataEnd: number;
  dataCrc32c: number;
  footerStart: number;
  footerEnd: number;
  footerCrc32c: number;
  rows: number;
  rowGroups: number;
}

export interface TargetResult {
  kind: "target";
  /** The target's keys, transferred (not copied) to the main thread. */
  keys: BigInt64Array;
  rowsPerGroup: number;
  part: WrittenPart;
  /** SHA-256 of the keys' bytes: part fingerprints cover it. */
  keysSha256: string;
  seconds: number;
  retries?: number;
  read?: ReadFigures;
}

export interface PartResult {
  kind: "part";
  part: WrittenPart;
  /** Rows the table had in the slice's key range (before the join). */
  sourceRows: number;
  seconds: number;
  retries?: number;
  read?: ReadFigures;
}

/** Errors cross the thread boundary as plain objects; the stage turns them back into JobErrors. */
export interface WorkerFailure {
  failed: true;
  table: string;
  message: string;
  reason: string;
  fix: string | undefined;
  retryable: boolean;
}

export type ExtractTask = TargetTask | PartTask;
export type ExtractResult = TargetResult | PartResult | WorkerFailure;
