// What every stage receives and what stages hand to one another.
import type { Bucket, ObjectInfo, PutResult } from "../src/bucket/port.ts";
import type { Config } from "../src/config.ts";
import type { Discovery } from "../src/discovery.ts";
import type { Layout } from "../src/layout.ts";
import type { Logger } from "../src/log.ts";
import type { Layout as FileLayout } from "../src/parts/assemble.ts";
import type { RowGroupPlan } from "../src/parts/plan.ts";
import type { StagedPart } from "../src/parts/store.ts";
import type { SchemaChange } from "../src/schema-change.ts";
import type { ValidationReport } from "../src/validation.ts";
import type { Warehouse } from "../src/warehouse/port.ts";

/** One table as extracted: its rows in the date range and how many of its parts an earlier attempt had staged. */
export interface TableOutcome {
  table: string;
  /** Its version when it was read (Warehouse.tableVersions); the parts were reused only if it matched. */
  version: string | null;
  rows: number;
  parts: number;
  reusedParts: number;
  /** Seconds from the extract stage's start to this run's first read of it; absent when no part of it was read (all reused). */
  startedSeconds?: number;
  /** Seconds from that read to its last part staged (the run report's extraction rate and slowest tables). */
  seconds?: number;
}

/** How BACKEND=gcp read the tables this run extracted (parts reused from an earlier attempt read nothing). */
export interface BigQueryReads {
  /** Read sessions on the source tables themselves: no query job. */
  tableReads: number;
  /** Reads through a query job (ROW_LIMIT, or BQ_READ_ROUTE=query). */
  queryJobs: number;
  /** Streams the read sessions gave, all reads together. */
  streams: number;
  /** The read sessions' estimatedTotalBytesScanned, summed (what the Storage Read API bills). */
  estimatedBytesScanned: number;
}

/** Filled in stage by stage; a later stage reads what an earlier one left. */
export interface RunState {
  discovery?: Discovery;
  extraction?: {
    plan: RowGroupPlan;
    rowGroupRows: number[];
    /** The target's keys: checked unique and strictly increasing when it was read. */
    target: { rows: number; keysSha256: string; keyStrictlyIncreasing: true };
    /** Every part in the bucket, the target's first. */
    parts: StagedPart[];
    tables: TableOutcome[];
    reads?: BigQueryReads;
  };
  /** The file's layout and merged footer (merge), checked by validate, composed by upload. */
  assembly?: { layout: FileLayout; footerBytesEstimate: number };
  validation?: ValidationReport;
  /** How the file differs from the published one's manifest (upload, before publishing); recorded in the run record. */
  schemaChange?: SchemaChange;
  uploaded?: { training: ObjectInfo & { uri: string }; manifest: PutResult; composeCalls: number; predictedCrc32c: string };
  /** The run report and the index across pairs, once written (stages/report.ts). */
  report?: { uri: string; bytes: number; indexUri: string };
  durations: Record<string, number>;
}

export interface StageContext {
  config: Readonly<Config>;
  log: Logger;
  warehouse: Warehouse;
  /** The output's bucket: parts are staged under its `_staging/` prefix and the file assembled in it. */
  bucket: Bucket;
  layout: Layout;
  signal: AbortSignal;
  /** Monotonic milliseconds; injected so tests can reason about time. */
  now: () => number;
  state: RunState;
}

export interface Stage {
  name: string;
  /** Returns the figures the runner logs with the stage's outcome. */
  run(ctx: StageContext): Promise<Record<string, unknown>>;
}
