// What every stage receives and what stages hand to one another.
import type { Bucket, PutResult } from "../src/bucket/port.ts";
import type { Config } from "../src/config.ts";
import type { Discovery } from "../src/discovery.ts";
import type { Layout } from "../src/layout.ts";
import type { Logger } from "../src/log.ts";
import type { ValidationReport } from "../src/validation.ts";
import type { Warehouse } from "../src/warehouse/port.ts";

export interface Checkpoint {
  dataset: string;
  table: string;
  path: string;
  rows: number;
  bytes: number;
  /** True when not extracted by this attempt (kept from an earlier one, locally or in CHECKPOINT_URI). */
  reused: boolean;
  /** True when downloaded from CHECKPOINT_URI. */
  restored?: boolean;
}

/** Filled in stage by stage; a later stage reads what an earlier one left. */
export interface RunState {
  discovery?: Discovery;
  checkpoints?: { target: Checkpoint; features: Checkpoint[] };
  merged?: { path: string; tablesMerged: number; rows: number; columns: number; rowGroups: number; bytes: number; peakRssBytes: number };
  validation?: ValidationReport;
  uploaded?: { training: PutResult; manifest: PutResult };
  durations: Record<string, number>;
}

export interface StageContext {
  config: Readonly<Config>;
  log: Logger;
  warehouse: Warehouse;
  bucket: Bucket;
  /** CHECKPOINT_URI: where checkpoints are staged durably; undefined when not configured. */
  checkpointStore?: Bucket | undefined;
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
