// Where each piece of data lives: part files under WORK_DIR while they wait for their upload, and
// the names of the objects the job publishes (the staged parts' names are in src/parts/store.ts).
import path from "node:path";

export interface Layout {
  root: string;
  /** Part files, each removed as soon as it is staged in the bucket. */
  parts: string;
}

export function layoutFor(workDir: string, pair: string): Layout {
  const root = path.join(workDir, pair);
  return { root, parts: path.join(root, "parts") };
}

export function trainingObjectName(pair: string): string {
  return `training_${pair}.parquet`;
}

export function manifestObjectName(pair: string): string {
  return `training_${pair}.manifest.json`;
}

/** The run report, beside the file (stages/report.ts). */
export function reportObjectName(pair: string): string {
  return `training_${pair}.report.html`;
}

/** The index across pairs, rebuilt from the manifests after each publish; its links are relative (`../training_<pair>.report.html`). */
export const REPORT_INDEX_OBJECT = "reports/index.html";
