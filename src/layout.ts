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
