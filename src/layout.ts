// Where each piece of data lives under WORK_DIR, and what objects are called in the bucket.
import path from "node:path";

export interface Layout {
  root: string;
  checkpoints: string;
  mergeParts: string;
  output: string;
}

export function layoutFor(workDir: string, pair: string): Layout {
  const root = path.join(workDir, pair);
  return {
    root,
    checkpoints: path.join(root, "checkpoints"),
    mergeParts: path.join(root, "merge-parts"),
    output: path.join(root, trainingObjectName(pair)),
  };
}

export function checkpointFileName(dataset: string, table: string): string {
  return `${dataset}.${table}.parquet`;
}

export function trainingObjectName(pair: string): string {
  return `training_${pair}.parquet`;
}

export function manifestObjectName(pair: string): string {
  return `training_${pair}.manifest.json`;
}

/**
 * Where a pair's checkpoints are staged in CHECKPOINT_URI, so a retried task in a new container
 * finds them: `<pair>/checkpoints/<checkpoint file name>`.
 */
export function stagedCheckpointPrefix(pair: string): string {
  return `${pair}/checkpoints/`;
}

export function stagedCheckpointName(pair: string, fileName: string): string {
  return `${stagedCheckpointPrefix(pair)}${fileName}`;
}
