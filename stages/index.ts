// The pipeline, in order. Each stage is idempotent: re-running after a failure reuses what is valid.
import { cleanupStage } from "./cleanup.ts";
import { extractStage } from "./extract.ts";
import { mergeStage } from "./merge.ts";
import { reportStage } from "./report.ts";
import type { Stage } from "./types.ts";
import { uploadStage } from "./upload.ts";
import { validateStage } from "./validate.ts";

export const STAGES: readonly Stage[] = [extractStage, mergeStage, validateStage, uploadStage, reportStage, cleanupStage];
export type { Stage, StageContext, RunState } from "./types.ts";
